import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../services/core/errors.js';
import { generateToken, parseTokenLines, tokenLine, TokenTable } from '../../services/core/infrastructure/auth-tokens.js';
import type { Logger } from '../../services/core/infrastructure/log.js';
import { silentLogger } from '../../services/core/infrastructure/log.js';
import { AdminAuthenticator } from '../../services/coordinator/admin-auth.js';
import { serveStatusPage, type StatusApi, type StatusPageServer } from '../../services/coordinator/status-page-server.js';

const opened: StatusPageServer[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

const reader = generateToken();
const operator = generateToken();
const authenticator = new AdminAuthenticator({
  tokens: new TokenTable(parseTokenLines(`${tokenLine('read', 'reader', reader)}\n${tokenLine('operator', 'ops', operator)}`, 'test')),
});

async function serve(api: StatusApi, options: { authenticator?: AdminAuthenticator; log?: Logger } = {}): Promise<string> {
  const server = await serveStatusPage({ listen: '127.0.0.1:0', tls: { enabled: false }, authenticator: options.authenticator ?? authenticator, api, log: options.log ?? silentLogger });
  opened.push(server);
  expect(server.url).toBe(`http://127.0.0.1:${server.port}/`);
  return server.url;
}

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

describe('status page server', () => {
  it('with TLS off, serves plain HTTP: the page without a token, its JSON to any role from read up', async () => {
    const url = await serve({ '/api/status': async (caller) => ({ who: caller.name, role: caller.role }) });
    const page = await fetch(url);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<script type="module" src="/status.js"></script>');
    expect(await (await fetch(`${url}api/status`, bearer(reader))).json()).toEqual({ who: 'reader', role: 'read' });
    expect(await (await fetch(`${url}api/status`, bearer(operator))).json()).toEqual({ who: 'ops', role: 'operator' });
  });

  it('a token in the query string is not a credential, and is not echoed', async () => {
    const url = await serve({ '/api/status': async () => ({ ok: true }) });
    const reply = await fetch(`${url}api/status?token=${reader}`);
    expect(reply.status).toBe(401);
    expect(reply.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(await reply.text()).not.toContain(reader);
  });

  it('a failing route answers 500 without its error, which goes to the log', async () => {
    const warnings: string[] = [];
    const log: Logger = { ...silentLogger, warn: (message, fields) => void warnings.push(`${message} ${JSON.stringify(fields ?? {})}`), child: () => log };
    const url = await serve({ '/api/status': async () => { throw new Error('redis said something internal'); } }, { log });
    const reply = await fetch(`${url}api/status`, bearer(reader));
    expect(reply.status).toBe(500);
    expect(await reply.text()).not.toContain('internal');
    expect(warnings.join('\n')).toContain('redis said something internal');
  });

  it('refusals are logged with the peer, never with the token sent', async () => {
    const warnings: string[] = [];
    const log: Logger = { ...silentLogger, warn: (message, fields) => void warnings.push(`${message} ${JSON.stringify(fields ?? {})}`), child: () => log };
    const url = await serve({ '/api/status': async () => ({}) }, { log });
    const wrong = generateToken();
    expect((await fetch(`${url}api/status`, bearer(wrong))).status).toBe(401);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/refused.*"path":"\/api\/status","peer":"127\.0\.0\.1"/);
    expect(warnings[0]).not.toContain(wrong);
  });

  it('with authentication disabled (development), the JSON is open', async () => {
    const url = await serve({ '/api/status': async (caller) => caller }, { authenticator: new AdminAuthenticator({ tokens: new TokenTable([]), disabled: true }) });
    expect(await (await fetch(`${url}api/status`)).json()).toMatchObject({ role: 'admin', via: 'auth disabled' });
  });

  it('an address that is not host:port, or one in use, is refused with the setting to change; nothing is left listening', async () => {
    const bad = await serveStatusPage({ listen: 'localhost', tls: { enabled: false }, authenticator, api: {}, log: silentLogger }).catch((err: unknown) => err);
    expect(bad).toBeInstanceOf(ConfigError);
    expect((bad as Error).message).toMatch(/statusListen localhost is not host:port/);
    const first = new URL(await serve({}));
    const busy = await serveStatusPage({ listen: `127.0.0.1:${first.port}`, tls: { enabled: false }, authenticator, api: {}, log: silentLogger }).catch((err: unknown) => err);
    expect(busy).toBeInstanceOf(ConfigError);
    expect((busy as Error).message).toMatch(/cannot serve the status page on 127\.0\.0\.1:\d+: .*EADDRINUSE.*TIDEMARK_STATUS_LISTEN/);
  });
});
