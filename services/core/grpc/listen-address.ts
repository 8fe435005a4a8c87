/**
 * Where a service listens when the operator does not say (docs/SECURITY.md#transport-security):
 * on loopback unless what it serves is protected, and a warning whenever it is reachable from
 * the network without that protection.
 */
import { hostname } from 'node:os';
import type { Logger } from '../infrastructure/log.js';

function hostOf(address: string): string {
  return address.slice(0, address.lastIndexOf(':')).replace(/^\[(.*)\]$/, '$1');
}

/** True for 127.0.0.0/8, ::1 and localhost. */
export function isLoopback(address: string): boolean {
  const host = hostOf(address).toLowerCase();
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export interface ListenChoice {
  /** What the service should listen on. */
  address: string;
  /** A warning to log (the operator chose an exposed address without the protection), if any. */
  warning?: string;
  /** With the warning: which service is exposed, and why its calls are not protected. */
  unprotected?: { service: string; why: string };
}

/**
 * The listen address of a service: `explicit` (--listen) if given, else every interface on
 * `port` when `exposeByDefault`, else loopback. An explicit non-loopback address is honoured,
 * with a warning unless `protectedCalls` (TLS on and, for the admin API, callers authenticated).
 */
export function chooseListen(options: {
  explicit?: string;
  port: number;
  /** The calls are protected: reachable from the network without a warning. */
  protectedCalls: boolean;
  /** Listen on every interface when no address is given. @default protectedCalls */
  exposeByDefault?: boolean;
  service: string;
  /** Why the calls are not protected, for the warning. */
  why: string;
}): ListenChoice {
  const { explicit, port, protectedCalls, exposeByDefault = protectedCalls, service, why } = options;
  if (explicit === undefined) return { address: exposeByDefault ? `0.0.0.0:${port}` : `127.0.0.1:${port}` };
  if (protectedCalls || isLoopback(explicit)) return { address: explicit };
  return {
    address: explicit,
    unprotected: { service, why },
    warning:
      `the ${service} listens on ${explicit}, reachable from the network, although ${why}: ` +
      'anyone who can reach this address can call it. You chose this with --listen; ' +
      'configure TLS (docs/SECURITY.md#transport-security) or listen on 127.0.0.1.',
  };
}

/** Logs the choice's warning, if any, with its facts as fields. */
export function logListenChoice(choice: ListenChoice, log: Logger): void {
  if (!choice.unprotected) return;
  log.warn('listening on a network address without protection: anyone who can reach it can call it; configure TLS (docs/SECURITY.md#transport-security) or listen on 127.0.0.1', {
    service: choice.unprotected.service,
    listen: choice.address,
    reason: choice.unprotected.why,
  });
}

/**
 * Where other processes reach a service bound to `listen` on `port`: the listen host, except
 * that the wildcard (0.0.0.0, ::) becomes this machine's host name.
 */
export function advertiseAddress(listen: string, port: number): string {
  const host = listen.slice(0, listen.lastIndexOf(':'));
  const reachable = host === '0.0.0.0' || host === '::' || host === '[::]' ? hostname() : host;
  return `${reachable}:${port}`;
}
