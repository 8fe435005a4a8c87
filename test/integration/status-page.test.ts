/**
 * The coordinator's status page (issue 15, item 4) against a real cluster (mutual TLS, tokens):
 * its HTTP layer (authentication, security headers, fixed routes, methods) spoken to directly,
 * then the page itself in headless Chromium (Debian's, driven by playwright-core): sign-in with a
 * read-only token, the leader and workers, a checkpoint taken during the test on the timeline, a
 * restore followed to its end, and a refused token. A full-page screenshot is left in a temp
 * directory for people to look at.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateToken } from '../../services/core/index.js';
import { RoundOutcome, type RestoreEvent } from '../../services/gen/tidemark/v1/admin.js';
import { declareBoundQueues } from '../helpers/broker.js';
import { freePort, startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { eventually } from '../helpers/eventually.js';
import { RoundRobinProducer } from '../helpers/producers.js';
import { createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';

const CHROMIUM = '/usr/bin/chromium';
const QUEUES = [
  { name: 'sp-orders', type: 'classic' },
  { name: 'sp-events', type: 'quorum' },
] as const;
const PER_QUEUE = 300;
/** Messages the second checkpoint holds: 40 before the first, then PER_QUEUE to each queue. */
const TOTAL = 40 + PER_QUEUE * QUEUES.length;
/** Restore speed: TOTAL messages at 100/s take over 6 s, long enough to watch it run on the page. */
const RESTORE_RATE = 100;

let services: TestServices;
let vhost: string;
let cluster: TestCluster | undefined;
let browser: Browser | undefined;
let pagePort: number;
let ca: Buffer;
const readToken = generateToken();
const wrongToken = generateToken();

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTPS request to the page, trusting the test CA; `path` is sent as given (no normalizing). */
function call(path: string, options: { method?: string; token?: string; authorization?: string } = {}): Promise<Reply> {
  const authorization = options.authorization ?? (options.token ? `Bearer ${options.token}` : undefined);
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: pagePort, path, method: options.method ?? 'GET', ca, headers: authorization ? { authorization } : {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function publish(count: number): Promise<void> {
  const producer = new RoundRobinProducer(services.amqpUrl, vhost, 'sp', QUEUES.map((q) => q.name), { maxMessages: count, window: 64 });
  producer.start();
  await producer.finished();
  expect(producer.total()).toBe(count);
}

describe('status page (issue 15)', () => {
  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium); npm test's pretest (test/setup/prepare-services.sh) does when it can`);
    services = await testServices();
    vhost = uniqueName('tm-page');
    await createTestVhost(services.managementUrl, vhost);
    await declareBoundQueues(services.amqpUrl, vhost, 'sp', QUEUES);
    pagePort = await freePort();
    cluster = await startTestCluster({
      services,
      namespace: uniqueName('tmp'),
      protect: `${vhost}:sp-*`,
      store: { kind: 'file' },
      workers: 2,
      extraEnv: { TIDEMARK_DISCOVERY_INTERVAL: '1s', TIDEMARK_STATUS_LISTEN: `127.0.0.1:${pagePort}` },
      extraTokens: [['read', 'page-reader', readToken]],
    });
    ca = readFileSync(join(cluster.tlsDir!, 'ca.pem'));
    await cluster.waitForStatus((s) => s.leader && s.protectedQueues === QUEUES.length && s.workers.reduce((n, w) => n + w.queues, 0) === QUEUES.length, 'both queues assigned');
    await eventually(`the status page to answer on port ${pagePort}`, async () => (await call('/')).status === 200);
    // An earlier, smaller checkpoint: the timeline then has history to show.
    await publish(40);
    expect((await cluster.client.checkpoint(true)).outcome).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
  }, 120_000);

  afterAll(async () => {
    await browser?.close().catch(() => {});
    await cluster?.stop();
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
  });

  it('the JSON API answers a read-only token only; every answer carries the security headers', async () => {
    for (const path of ['/api/status', '/api/checkpoints', '/api/restores', '/api/retention']) {
      const none = await call(path);
      expect(none.status, path).toBe(401);
      expect(none.headers['content-type']).toMatch(/^application\/json/);
      expect(JSON.parse(none.body).error).toMatch(/no credentials/);
      const wrong = await call(path, { token: wrongToken });
      expect(wrong.status, path).toBe(401);
      expect(JSON.parse(wrong.body).error).toMatch(/not one this coordinator knows/);
      expect(wrong.body).not.toContain(wrongToken);
      expect((await call(path, { authorization: `Basic ${readToken}` })).status).toBe(401);
      const ok = await call(path, { token: readToken });
      expect(ok.status, `${path}: ${ok.body}`).toBe(200);
      expect(ok.headers['cache-control']).toBe('no-store');
      expect(ok.headers['content-type']).toBe('application/json; charset=utf-8');
    }
    const status = JSON.parse((await call('/api/status', { token: readToken })).body);
    expect(status.caller).toEqual({ name: 'page-reader', role: 'read' });
    expect(status.status).toMatchObject({ coordinatorId: 'coordinator', leader: true });
    expect(status.status.leaderToken).toBeGreaterThan(0);
    expect(status.status.workers.map((w: { workerId: string }) => w.workerId).sort()).toEqual(['worker-1', 'worker-2']);
    expect(status.queues.map((q: { queue: string }) => q.queue).sort()).toEqual(QUEUES.map((q) => q.name).sort());
    // Every queue is reported by its worker, with its capture lag (a number, not null).
    for (const q of status.queues) expect(q).toMatchObject({ vhost, lagMessages: expect.any(Number), lagSeconds: expect.any(Number), error: '' });

    for (const path of ['/', '/status.js', '/status.css', '/api/status', '/nothing']) {
      const reply = await call(path, { token: readToken });
      expect(reply.headers['content-security-policy'], path).toMatch(/default-src 'self'/);
      expect(reply.headers['content-security-policy']).not.toMatch(/unsafe-inline|unsafe-eval/);
      expect(reply.headers).toMatchObject({ 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'x-frame-options': 'DENY' });
    }
    expect((await call('/')).headers['content-type']).toBe('text/html; charset=utf-8');
    expect((await call('/status.js')).headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect((await call('/status.css')).headers['content-type']).toBe('text/css; charset=utf-8');
    // The page itself is served over HTTPS with the coordinator's certificate: no inline script or style in it.
    const html = (await call('/')).body;
    expect(html).not.toMatch(/<script>|<style|style=|onclick=|onload=/i);
  });

  it('only the fixed routes exist: unknown paths and traversal attempts get 404, other methods 405', async () => {
    for (const path of ['/nothing', '/index.html', '/api', '/api/', '/api/status/', '/../package.json', '/%2e%2e/%2e%2e/package.json', '/..%2f..%2fpackage.json', '/status-page/../../index.ts', '//etc/passwd', '/status.js/../../status-page-server.js']) {
      const reply = await call(path, { token: readToken });
      expect(reply.status, path).toBe(404);
      expect(reply.headers['content-type'], path).toMatch(/^application\/json/);
      expect(reply.body).not.toMatch(/"name": "tidemark"|root:|import /);
    }
    for (const method of ['HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS']) {
      const reply = await call('/api/status', { method, token: readToken });
      expect(reply.status, method).toBe(405);
      expect(reply.headers.allow).toBe('GET');
    }
    expect((await call('/', { method: 'POST' })).status).toBe(405);
  });

  it('in Chromium: sign in with a read-only token, see leader and workers, a new checkpoint on the timeline and a restore followed to its end', async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
    const page: Page = await context.newPage();
    // A Content-Security-Policy violation or a script error shows up here.
    const problems: string[] = [];
    page.on('console', (message) => {
      if (message.type() === 'error' && !/401/.test(message.text())) problems.push(message.text());
    });
    page.on('pageerror', (err) => problems.push(err.message));
    const url = `https://127.0.0.1:${pagePort}/`;
    await page.goto(url);

    // A wrong token is refused, and the page says so.
    await page.locator('#token').fill(wrongToken);
    await page.locator('#login-form button').click();
    await expectText(page, '#login-error', /refused this token: the bearer token is not one this coordinator knows/);
    expect(await page.locator('#page').isHidden()).toBe(true);
    expect(await page.evaluate(() => (globalThis as unknown as { sessionStorage: { length: number } }).sessionStorage.length)).toBe(0);

    await page.locator('#token').fill(readToken);
    await page.locator('#login-form button').click();
    await expectText(page, '#leader', /^leader$/);
    await expectText(page, '#signed-in', /page-reader \(read\)/);
    await expectText(page, '#card-token', /leader token [1-9]/);
    await eventually('both workers live on the page', async () => (await page.locator('#workers tbody tr td.state.ok').count()) === 2);
    expect(await page.locator('#workers tbody').innerText()).toMatch(/worker-1[\s\S]*worker-2|worker-2[\s\S]*worker-1/);
    await eventually('the queues on the page', async () => (await page.locator('#queues tbody tr[data-queue]').count()) === QUEUES.length);
    // The lag column shows what the workers report (messages, and seconds).
    expect((await page.locator('#queues tbody td.lag').allInnerTexts()).every((t) => /^[\d,]+ msg · \d+(\.\d+)? s$/.test(t))).toBe(true);

    // A checkpoint taken now appears on the timeline and in the table, with its size.
    await publish(PER_QUEUE * QUEUES.length);
    const round = await cluster!.client.checkpoint(true);
    expect(round.outcome, round.reason).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    const epoch = round.epoch;
    const bar = page.locator(`#timeline rect[data-epoch="${epoch}"]`);
    await eventually(`checkpoint ${epoch} on the timeline`, async () => (await bar.count()) === 1, { timeoutMs: 20_000 });
    expect(Number(await bar.getAttribute('height'))).toBeGreaterThan(2);
    expect(await bar.locator('title').textContent()).toContain(`${TOTAL} messages in 2 queue(s)`);
    expect(await page.locator('#timeline rect[data-epoch]').count()).toBe(2);
    await expectText(page, `#checkpoints tr[data-epoch="${epoch}"]`, new RegExp(`#${epoch}[\\s\\S]*${TOTAL}`));
    await expectText(page, '#card-latest', new RegExp(`^#${epoch}$`));
    await expectText(page, `#queues tr[data-queue="${vhost}/sp-orders"]`, new RegExp(`#${epoch}: ${PER_QUEUE + 20} msg`));
    await expectText(page, `#retention tr[data-epoch="${epoch}"]`, /latest/);

    // A restore started now is followed on the page: running, then done at 100 %.
    const events: RestoreEvent[] = [];
    const restoring = (async () => {
      for await (const event of cluster!.client.restore({ checkpoint: String(epoch), prefix: 'restored.', rateLimit: RESTORE_RATE })) events.push(event);
    })();
    const restoreId = await eventually('the restore plan', () => {
      const plan = events.find((e) => e.event?.$case === 'plan');
      return plan?.event?.$case === 'plan' ? plan.event.value.restoreId : undefined;
    });
    const row = page.locator(`#restores tr[data-restore-id="${restoreId}"]`);
    await eventually(`restore ${restoreId} running on the page`, async () => (await row.count()) === 1 && (await row.locator('td.state').innerText()) === 'running', { timeoutMs: 20_000, intervalMs: 100 });
    await eventually(`restore ${restoreId} done on the page`, async () => (await row.locator('td.state').innerText()) === 'done', { timeoutMs: 60_000 });
    await restoring;
    expect(events.at(-1)?.event).toMatchObject({ $case: 'done', value: { state: 'done', messages: TOTAL } });
    expect(await row.locator('.percent').innerText()).toBe('100 %');
    expect(Number(await row.locator('progress').getAttribute('value'))).toBe(100);
    expect(await row.innerText()).toContain(`${TOTAL} / ${TOTAL}`);

    // The token stays in the tab: never in the address.
    expect(page.url()).toBe(url);
    expect(await page.evaluate(() => Object.values((globalThis as unknown as { sessionStorage: Record<string, string> }).sessionStorage))).toEqual([readToken]);

    const shot = join(mkdtempSync(join(tmpdir(), 'tidemark-status-page-')), 'status-page.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`status page screenshot: ${shot}`);
    expect(problems, 'no script error or Content-Security-Policy violation on the page').toEqual([]);

    // Signing out forgets the token.
    await page.locator('#sign-out').click();
    expect(await page.locator('#login').isVisible()).toBe(true);
    expect(await page.evaluate(() => (globalThis as unknown as { sessionStorage: { length: number } }).sessionStorage.length)).toBe(0);
    await context.close();
  }, 180_000);

  it('no token reaches the coordinator log', () => {
    const log = readFileSync(cluster!.logFile, 'utf8');
    expect(log).toMatch(/"url":"https:\/\/127\.0\.0\.1:\d+\/".*"msg":"serving the status page/);
    expect(log).toMatch(/"path":"\/api\/status".*"msg":"status page request refused"/);
    expect(log).not.toContain(readToken);
    expect(log).not.toContain(wrongToken);
  });
});

/** Waits until the element's text matches. */
async function expectText(page: Page, selector: string, pattern: RegExp, timeoutMs = 20_000): Promise<void> {
  await eventually(`${selector} to read ${pattern}`, async () => {
    const locator = page.locator(selector);
    if ((await locator.count()) !== 1) return false;
    const text = await locator.innerText();
    if (pattern.test(text)) return true;
    throw new Error(`${selector} reads ${JSON.stringify(text)}`);
  }, { timeoutMs });
}
