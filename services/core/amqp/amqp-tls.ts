/**
 * TLS options of AMQP connections to the protected broker (docs/SECURITY.md#transport-security):
 * its CA, Tidemark's client certificate, and EXTERNAL authentication by that certificate. Set
 * once at start-up (configureAmqpTls, like the failpoints) so that every place that opens an
 * AMQP connection asks amqpSocketOptions for them, by URL: they apply to the protected broker's
 * host only; a restore into another broker trusts the system's roots.
 */
import amqp from 'amqplib';
import type { TlsMaterial } from '../infrastructure/backend-tls.js';

interface AmqpTls {
  /** host:port of the protected broker. */
  endpoint: string;
  material?: TlsMaterial;
  external: boolean;
}

let configured: AmqpTls | undefined;

function endpointOf(url: string): string {
  const parsed = new URL(url);
  const port = parsed.port || (parsed.protocol === 'amqps:' ? '5671' : '5672');
  return `${parsed.hostname.toLowerCase()}:${port}`;
}

/** Sets the protected broker's TLS options for this process; no material and no EXTERNAL clears them. */
export function configureAmqpTls(amqpUrl: string, material: TlsMaterial | undefined, external: boolean): void {
  configured = material || external ? { endpoint: endpointOf(amqpUrl), material, external } : undefined;
}

/**
 * amqplib's socket options for a connection to `url`: `base` plus, for an amqps:// URL of the
 * protected broker, its CA and client certificate, and EXTERNAL credentials when configured.
 */
export function amqpSocketOptions<T extends object>(url: string, base: T): T & Partial<TlsMaterial> & { credentials?: ReturnType<typeof amqp.credentials.external> } {
  if (!configured || !url.startsWith('amqps://') || endpointOf(url) !== configured.endpoint) return base;
  return {
    ...base,
    ...(configured.material ?? {}),
    ...(configured.external ? { credentials: amqp.credentials.external() } : {}),
  };
}
