/**
 * The coordinator's status page (docs/OPERATIONS.md#status-page): a few static files (the page,
 * its stylesheet and its one ES module, from ./status-page/) and a small read-only JSON API under
 * /api/ that the page polls. HTTPS with the coordinator's server certificate when TLS is on;
 * plain HTTP only with TLS off.
 *
 * - every /api/ answer needs a bearer token of the admin API's token table with the read role or
 *   higher (admin-auth.ts); the static files hold no data and load without one, so the page can
 *   ask for the token;
 * - only the fixed routes below exist: no path reaches the file system, so nothing outside the
 *   page's directory can be served whatever the URL says;
 * - GET only; every answer carries the security headers of SECURITY_HEADERS (no inline script or
 *   style is allowed, so the page is its files and nothing injected can run);
 * - refusals are logged (throttled) with the peer address, never with what the caller sent.
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { closeHttpServer, ConfigError, listenHttp, errorMessage, type GrpcTls, type LogFields, type Logger, parseHttpListen, type Role, roleAllows, throttledWarn } from '../core/index.js';
import type { AdminAuthenticator, AdminCaller } from './admin-auth.js';

/** The page's files: URL path → file in ./status-page/ and its content type. Nothing else is served from disk. */
const PAGE_FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/status.css': { file: 'status.css', type: 'text/css; charset=utf-8' },
  '/status.js': { file: 'status.js', type: 'text/javascript; charset=utf-8' },
  '/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
};

/** Where the page's files are, beside this module in the source tree and in dist/ (the build copies them). */
export const PAGE_DIRECTORY = fileURLToPath(new URL('./status-page/', import.meta.url));

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
} as const;

/** The role the status page and its JSON API need. */
export const STATUS_PAGE_ROLE: Role = 'read';

/** One JSON route: what it answers for an identified caller. */
export type StatusApi = Record<string, (caller: AdminCaller) => Promise<unknown>>;

export interface StatusPageOptions {
  /** host:port to listen on (statusListen). */
  listen: string;
  /** The coordinator's TLS material: HTTPS with its certificate when enabled. */
  tls: GrpcTls;
  authenticator: AdminAuthenticator;
  /** The JSON routes, by path (e.g. `/api/status`). */
  api: StatusApi;
  log: Logger;
}

export interface StatusPageServer {
  /** The bound port (useful with port 0). */
  port: number;
  /** `https://host:port/` (or http with TLS off): the address to open. */
  url: string;
  close(): Promise<void>;
}

/** Starts the status page; rejects with a ConfigError (nothing left running) if it cannot listen. */
export async function serveStatusPage(options: StatusPageOptions): Promise<StatusPageServer> {
  const { host, port } = parseHttpListen(options.listen, 'statusListen', '127.0.0.1:7780');
  const files = new Map(Object.entries(PAGE_FILES).map(([path, { file, type }]) => [path, { body: readPageFile(file), type }]));
  const refused = throttledWarn(options.log);
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res, files, options, refused).catch((err: unknown) => {
      options.log.warn('status page request failed', { method: req.method, path: pathOf(req), err: errorMessage(err) });
      if (!res.headersSent) sendJson(res, 500, { error: 'the coordinator could not answer this; see its log' });
      else res.destroy();
    });
  };
  const server: Server = options.tls.enabled
    ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key, minVersion: 'TLSv1.2' }, handler)
    : createHttpServer(handler);
  // A page polls with small GETs: a slow or idle client must not hold a socket for long.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  try {
    await listenHttp(server, host, port);
  } catch (err) {
    throw new ConfigError(`cannot serve the status page on ${options.listen}: ${errorMessage(err)}; nothing was started. Pick another statusListen (TIDEMARK_STATUS_LISTEN).`, { cause: err });
  }
  server.on('error', (err) => options.log.warn('status page server failed', { err: errorMessage(err) }));
  const bound = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? 'localhost' : host;
  return {
    port: bound,
    url: `${options.tls.enabled ? 'https' : 'http'}://${shownHost}:${bound}/`,
    close: () => closeHttpServer(server),
  };
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  files: ReadonlyMap<string, { body: Buffer; type: string }>,
  options: StatusPageOptions,
  refused: (message: string, fields?: LogFields) => void,
): Promise<void> {
  const path = pathOf(req);
  if (req.method !== 'GET') {
    res.setHeader('allow', 'GET');
    sendJson(res, 405, { error: `the status page answers GET only, not ${req.method}; nothing was done` });
    return;
  }
  const file = files.get(path);
  if (file) {
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': file.type, 'cache-control': 'no-cache', 'content-length': file.body.length }).end(file.body);
    return;
  }
  const route = Object.hasOwn(options.api, path) ? options.api[path] : undefined;
  if (!route) {
    sendJson(res, 404, { error: `nothing at ${path.slice(0, 100)}: the page is at /, its data at ${Object.keys(options.api).join(', ')}` });
    return;
  }
  let caller: AdminCaller;
  try {
    caller = options.authenticator.identifyBearer(req.headers.authorization, 'header', 'sign in again with a token of TIDEMARK_AUTH_TOKENS_FILE');
  } catch (err) {
    refused('status page request refused', { path, peer: req.socket.remoteAddress ?? 'unknown', reason: errorMessage(err) });
    res.setHeader('www-authenticate', 'Bearer realm="tidemark status"');
    sendJson(res, 401, { error: errorMessage(err) });
    return;
  }
  if (!roleAllows(caller.role, STATUS_PAGE_ROLE)) {
    sendJson(res, 403, { error: `${caller.name} has the ${caller.role} role; the status page needs the ${STATUS_PAGE_ROLE} role` });
    return;
  }
  sendJson(res, 200, await route(caller));
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': text.length }).end(text);
}

/** The request's path without its query; the query is never used (a token never belongs there). */
function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const at = url.indexOf('?');
  return at < 0 ? url : url.slice(0, at);
}

function readPageFile(file: string): Buffer {
  try {
    return readFileSync(join(PAGE_DIRECTORY, file));
  } catch (err) {
    throw new ConfigError(`the status page's file ${file} is missing from ${PAGE_DIRECTORY} (${errorMessage(err)}): rebuild with "npm run build", which copies it; nothing was started`, { cause: err });
  }
}


