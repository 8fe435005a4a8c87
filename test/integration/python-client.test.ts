/**
 * The Python client generated from proto/ (clients/python): the committed code is what
 * generate.sh makes from today's proto/, and docs/CLIENT.md's example.py, on Debian's
 * python3-grpcio, reads a live cluster's status, takes a checkpoint and lists it over mutual TLS
 * with a bearer token.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { repositoryRoot } from '../helpers/repo.js';
import amqp from 'amqplib';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';

const run = promisify(execFile);
const pythonDir = join(repositoryRoot(), 'clients', 'python');
/** Debian's interpreter, which has python3-grpcio; not a pyenv python3 earlier on PATH. */
const PYTHON = '/usr/bin/python3';

let dir: string;
let services: TestServices;
let vhost: string | undefined;
let cluster: TestCluster | undefined;

async function example(env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(PYTHON, [join(pythonDir, 'example.py')], { env: { PATH: process.env.PATH, PYTHONDONTWRITEBYTECODE: '1', ...env }, timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}

describe('the Python client generated from proto/', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tidemark-python-client-'));
    await run(PYTHON, ['-c', 'import grpc, google.protobuf']).catch((err) => {
      throw new Error(`${PYTHON} cannot import grpc: install Debian's python3-grpcio python3-protobuf (test/setup/prepare-services.sh does, as root): ${err}`);
    });
  });

  afterAll(async () => {
    await cluster?.stop();
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('is committed exactly as clients/python/generate.sh makes it from proto/', async () => {
    const out = join(dir, 'generated');
    await run('bash', [join(pythonDir, 'generate.sh'), out]);
    const files = (base: string) => readdirSync(join(base, 'tidemark', 'v1')).filter((f) => f.endsWith('.py')).sort();
    expect(files(pythonDir)).toEqual(files(out));
    expect(files(out)).toEqual(expect.arrayContaining(['admin_pb2.py', 'admin_pb2_grpc.py', 'store_pb2.py', 'worker_pb2.py']));
    for (const file of files(out)) {
      // A stale file: run `npm run gen:python` and commit clients/python/tidemark.
      expect(readFileSync(join(pythonDir, 'tidemark', 'v1', file), 'utf8'), `clients/python/tidemark/v1/${file} is stale`).toBe(readFileSync(join(out, 'tidemark', 'v1', file), 'utf8'));
    }
  });

  it('runs example.py against a live cluster: status, a committed checkpoint, the list; a wrong token is refused', async () => {
    services = await testServices();
    vhost = uniqueName('tm-python');
    await createTestVhost(services.managementUrl, vhost);
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue('invoices', { durable: true });
    await channel.assertExchange('billing', 'direct', { durable: true });
    await channel.bindQueue('invoices', 'billing', 'invoices');
    cluster = await startTestCluster({ services, namespace: uniqueName('tmpy'), protect: `${vhost}:invoices`, store: { kind: 'file' }, workers: 1 });
    await cluster.waitForStatus((s) => s.protectedQueues === 1 && s.workers.reduce((n, w) => n + w.queues, 0) === 1, 'the queue protected');
    for (let i = 0; i < 3; i += 1) channel.publish('billing', 'invoices', Buffer.from(`invoice ${i}`), { persistent: true });
    await channel.waitForConfirms();
    await connection.close();
    const tokenFile = join(dir, 'admin.token');
    writeFileSync(tokenFile, `${cluster.token}\n`, { mode: 0o600 });
    const env = { TIDEMARK_COORDINATOR: cluster.address, TIDEMARK_TLS_CA: join(cluster.tlsDir!, 'ca.pem'), TIDEMARK_TOKEN_FILE: tokenFile };

    const ok = await example(env);
    expect(ok.stderr).toBe('');
    expect(ok.code, ok.stdout).toBe(0);
    expect(ok.stdout).toMatch(/^coordinator \S+: leader=True, 1 worker\(s\), 1 protected queue\(s\)$/m);
    const epoch = /^checkpoint (\d+): ROUND_OUTCOME_COMMITTED in \d+ ms$/m.exec(ok.stdout)?.[1];
    expect(epoch, ok.stdout).toBeDefined();
    expect(ok.stdout).toMatch(new RegExp(`^  epoch ${epoch}: 1 queue\\(s\\), 3 message\\(s\\), 27 byte\\(s\\)`, 'm'));

    const wrongToken = join(dir, 'wrong.token');
    writeFileSync(wrongToken, 'not-the-token\n', { mode: 0o600 });
    const refused = await example({ ...env, TIDEMARK_TOKEN_FILE: wrongToken });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/UNAUTHENTICATED/);
    expect(refused.stderr + refused.stdout).not.toContain('not-the-token');
  }, 300_000);
});
