/**
 * The part of fetch the management client uses (method, headers, body, abort signal; status and
 * text back) over node:https with a CA of its own: Node's fetch takes no CA without an extra
 * dependency. Used only when TIDEMARK_MANAGEMENT_TLS_CA is set.
 */
import { request } from 'node:https';

export interface FetchLike {
  (url: string, init: { method: string; headers: Record<string, string>; body?: string; signal?: AbortSignal }): Promise<{ ok: boolean; status: number; text(): Promise<string> }>;
}

/** A fetch that trusts `ca` (PEM) for https:// URLs. Errors carry `cause.code` as fetch's do. */
export function httpsFetchWithCa(ca: Buffer): FetchLike {
  return (url, init) =>
    new Promise((resolve, reject) => {
      const req = request(url, { method: init.method, headers: init.headers, ca, signal: init.signal }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', (err) => reject(new TypeError('fetch failed', { cause: err })));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ ok: status >= 200 && status < 300, status, text: async () => text });
        });
      });
      req.on('error', (err) => reject(err.name === 'AbortError' ? (init.signal?.reason ?? err) : new TypeError('fetch failed', { cause: err })));
      if (init.body !== undefined) req.write(init.body);
      req.end();
    });
}
