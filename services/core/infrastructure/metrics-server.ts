/**
 * Serves a Prometheus registry at GET /metrics over plain HTTP (the `metricsListen` setting).
 * Every other path or method gets 404, so the endpoint exposes nothing else. Metrics name queues,
 * vhosts and workers: bound anywhere but loopback, the endpoint demands a bearer token
 * (`metricsTokenFile`), and without one it refuses to start.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { isIP } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { ConfigError, errorMessage } from '../errors.js';
import type { Logger } from './log.js';
import { closeHttpServer, listenHttp, parseHttpListen } from './http-listen.js';

export interface MetricsServer {
  /** The bound port (useful with port 0). */
  port: number;
  close(): Promise<void>;
}

export interface MetricsOptions {
  /** Bearer token a scrape must send; required unless `listen` is a loopback address. @default none */
  token?: string;
}

/** True for addresses only this machine can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1' || host === '0:0:0:0:0:0:0:1';
}

const digest = (text: string) => createHash('sha256').update(text).digest();

/** Listens on `listen` (`host:port`, `[v6]:port`); rejects with a ConfigError if it cannot. */
export async function serveMetrics(registry: Registry, listen: string, log: Logger, options: MetricsOptions = {}): Promise<MetricsServer> {
  const { host, port } = parseHttpListen(listen, 'metricsListen', '0.0.0.0:9464');
  if (!options.token && !isLoopbackHost(host)) {
    throw new ConfigError(
      `metricsListen ${listen} is reachable from other machines and no metrics token is set: set TIDEMARK_METRICS_TOKEN_FILE (Prometheus then sends "Authorization: Bearer <token>"), or bind to 127.0.0.1; nothing was started`,
    );
  }
  const expected = options.token ? digest(`Bearer ${options.token}`) : undefined;
  const server = createServer((req, res) => {
    if (expected && !timingSafeEqual(digest(req.headers.authorization ?? ''), expected)) {
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer realm="tidemark metrics"' }).end('unauthorized: send "Authorization: Bearer <token>" (TIDEMARK_METRICS_TOKEN_FILE)\n');
      return;
    }
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are at GET /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => {
        log.warn('collecting metrics failed', { err: errorMessage(err) });
        res.writeHead(500, { 'content-type': 'text/plain' }).end('collecting metrics failed; see the service log\n');
      },
    );
  });
  try {
    await listenHttp(server, host, port);
  } catch (err) {
    throw new ConfigError(`cannot serve metrics on ${listen}: ${errorMessage(err)}; nothing was started. Pick another metricsListen (TIDEMARK_METRICS_LISTEN).`, { cause: err });
  }
  server.on('error', (err) => log.warn('metrics endpoint failed', { err: errorMessage(err) }));
  return { port: (server.address() as AddressInfo).port, close: () => closeHttpServer(server) };
}


