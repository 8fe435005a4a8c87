/** What the HTTP endpoints (metrics, the status page) share: their listen address and their stop. */
import type { Server } from 'node:http';
import { ConfigError } from '../errors.js';

/** `host:port` or `[v6]:port`; a ConfigError naming `setting` and an `example` otherwise. */
export function parseHttpListen(listen: string, setting: string, example: string): { host: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:]+)\]|([^:\s]+)):(\d{1,5})$/.exec(listen);
  if (!match) throw new ConfigError(`${setting} ${listen} is not host:port (e.g. ${example}); nothing was started`);
  return { host: match[1] ?? match[2], port: Number(match[3]) };
}

/** Closes `server`, dropping kept-alive connections (scrapers, browsers) so they do not hold up a stop. */
export function closeHttpServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  return closed;
}

/** Starts `server` listening; rejects with the listen error (an address in use, ...) if it cannot. */
export function listenHttp(server: Server, host: string, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
