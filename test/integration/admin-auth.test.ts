/**
 * Who may do what on the admin API (issue 14, docs/SECURITY.md#who-may-do-what), against a real
 * cluster with three callers (read, operator, admin) and one configured restore target whose
 * password sits in a file: unauthenticated and under-privileged calls are refused before anything
 * is published; an operator restores into the named target; an admin into a raw URL whose password
 * comes from the environment; a worker records progress only for the queue the leader assigned
 * it; and neither the target's password nor any token turns up in Redis, the CLI's output, the
 * logs or any process's argv.
 */
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TidemarkClient, type RestoreEvent, type RestoreRequest } from '../../services/client/index.js';
import { ManagementClient } from '../../services/core/amqp/management-client.js';
import { WorkerClient } from '../../services/core/grpc/worker-client.js';
import { PermissionDeniedError, UnauthenticatedError } from '../../services/core/errors.js';
import { generateToken } from '../../services/core/index.js';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import type { CheckpointManifest } from '../../services/gen/tidemark/v1/store.js';
import type { RestoreProgress } from '../../services/gen/tidemark/v1/worker.js';
import { declareBoundQueues, readQueue } from '../helpers/broker.js';
import { jsonLines, runCli, spawnCli, type CliResult } from '../helpers/cli.js';
import { withoutCertificate } from '../helpers/tls.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { clusterLogEvents } from '../helpers/log-lines.js';
import { RoundRobinProducer } from '../helpers/producers.js';
import { createTestUser, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';

const QUEUES = [
  { name: 'a-one', type: 'classic' },
  { name: 'a-two', type: 'quorum' },
] as const;
const PER_QUEUE = 25;

const readToken = generateToken();
const operatorToken = generateToken();

let services: TestServices;
let vhost: string;
let drVhost: string;
let namespace: string;
let dir: string;
let account: { user: string; password: string; remove: () => Promise<void> };
/** The target broker's URL as configured: the user, no password. */
let drUrl: string;
let cluster: TestCluster;
let manifest: CheckpointManifest;
let redis: Redis;
/** Everything any CLI run printed, scanned for secrets at the end. */
const printed: string[] = [];
const restoreIds: string[] = [];

async function cli(args: string[], token: string, extraEnv: Record<string, string> = {}): Promise<CliResult> {
  const result = await runCli(args, { ...cluster.env, TIDEMARK_TOKEN: token, ...extraEnv });
  printed.push(result.stdout, result.stderr);
  return result;
}

function client(token?: string): TidemarkClient {
  return new TidemarkClient(cluster.address, { tls: cluster.clientTls, token, deadlineMs: 30_000 });
}

async function restoreEvents(c: TidemarkClient, request: Partial<RestoreRequest>): Promise<{ events: RestoreEvent[]; err?: Error }> {
  const events: RestoreEvent[] = [];
  try {
    for await (const event of c.restore(request)) events.push(event);
    return { events };
  } catch (err) {
    return { events, err: err as Error };
  }
}

function grpcCode(err: unknown): grpc.status | undefined {
  return ((err as Error).cause as grpc.ServiceError | undefined)?.code;
}

async function queuesOf(v: string, prefix: string): Promise<string[]> {
  const queues = await new ManagementClient(services.managementUrl).listQueues(v);
  return queues.map((q) => q.name).filter((n) => n.startsWith(prefix)).sort();
}

function lastEvent(result: CliResult): Record<string, unknown> {
  const lines = jsonLines(result.stdout);
  return lines[lines.length - 1];
}

async function record(id: string): Promise<Record<string, unknown>> {
  return JSON.parse((await redis.get(`${namespace}:restore:${id}`)) ?? 'null') as Record<string, unknown>;
}

describe('admin API authentication and roles', () => {
  beforeAll(async () => {
    services = await testServices();
    vhost = uniqueName('tm-auth');
    drVhost = uniqueName('tm-auth-dr');
    namespace = uniqueName('tma');
    await createTestVhost(services.managementUrl, vhost);
    await createTestVhost(services.managementUrl, drVhost);
    await declareBoundQueues(services.amqpUrl, vhost, 'auth', QUEUES);
    account = await createTestUser(services.managementUrl, drVhost);
    dir = mkdtempSync(join(tmpdir(), 'tm-auth-'));
    const passwordFile = join(dir, 'dr.password');
    writeFileSync(passwordFile, `${account.password}\n`, { mode: 0o600 });
    const url = new URL(services.amqpUrl);
    url.hostname = '127.0.0.1';
    url.username = account.user;
    url.password = '';
    drUrl = url.toString();
    const targetsFile = join(dir, 'targets.json');
    writeFileSync(targetsFile, JSON.stringify({ dr: { amqpUrl: drUrl, passwordFile } }));
    chmodSync(targetsFile, 0o600);
    cluster = await startTestCluster({
      services,
      namespace,
      protect: `${vhost}:a-*`,
      store: { kind: 'file' },
      workers: 1,
      extraTokens: [
        ['read', 'dashboard', readToken],
        ['operator', 'ops', operatorToken],
      ],
      extraEnv: { TIDEMARK_RESTORE_TARGETS: targetsFile },
    });
    redis = new Redis(services.redisUrl);
    await cluster.waitForStatus((s) => s.protectedQueues === 2 && s.workers.reduce((n, w) => n + w.queues, 0) === 2, 'both queues assigned');
    const producer = new RoundRobinProducer(services.amqpUrl, vhost, 'auth', QUEUES.map((q) => q.name), { maxMessages: PER_QUEUE * QUEUES.length });
    producer.start();
    await producer.finished();
    const round = await cluster.client.checkpoint(true);
    expect(round.outcome, round.reason).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    manifest = await cluster.client.getCheckpoint(String(round.epoch));
  });

  afterAll(async () => {
    await cluster?.stop();
    redis?.disconnect();
    await account?.remove().catch(() => {});
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
    if (drVhost) await deleteTestVhost(services.managementUrl, drVhost);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('no token or a wrong one is UNAUTHENTICATED, from the client library and from the CLI', async () => {
    // The test CA's client certificate has no role here: it identifies a caller, who is refused.
    const certified = client();
    const unmapped = (await certified.status().catch((err: unknown) => err)) as Error;
    expect(unmapped).toBeInstanceOf(UnauthenticatedError);
    expect(unmapped.message).toContain('the client certificate "tidemark-client" has no role: map it in TIDEMARK_AUTH_CERT_ROLES');
    certified.close();
    const anonymous = new TidemarkClient(cluster.address, { tls: withoutCertificate(cluster.clientTls), deadlineMs: 30_000 });
    const none = (await anonymous.status().catch((err: unknown) => err)) as Error;
    expect(none).toBeInstanceOf(UnauthenticatedError);
    expect(grpcCode(none)).toBe(grpc.status.UNAUTHENTICATED);
    expect(none.message).toContain('no credentials: the admin API needs a token (set TIDEMARK_TOKEN or TIDEMARK_TOKEN_FILE)');
    const streamed = await restoreEvents(anonymous, { checkpoint: 'latest', prefix: 'anon.' });
    expect(streamed.err).toBeInstanceOf(UnauthenticatedError);
    expect(streamed.events).toEqual([]);
    anonymous.close();

    const wrongToken = generateToken();
    const wrong = client(wrongToken);
    const refused = (await wrong.listCheckpoints().catch((err: unknown) => err)) as Error;
    expect(refused).toBeInstanceOf(UnauthenticatedError);
    expect(grpcCode(refused)).toBe(grpc.status.UNAUTHENTICATED);
    expect(refused.message).toContain('the bearer token is not one this coordinator knows');
    wrong.close();

    const viaCli = await cli(['status', '--json'], wrongToken);
    expect(viaCli.code).not.toBe(0);
    expect(viaCli.stdout).toBe('');
    expect(viaCli.stderr).toContain('the bearer token is not one this coordinator knows');
    expect(viaCli.stderr).not.toContain(wrongToken);
    expect(await queuesOf(vhost, 'anon.')).toEqual([]);
  });

  it('a read-only token reads and plans a dry run, and restoring or checkpointing is PERMISSION_DENIED; nothing is published', async () => {
    const reader = client(readToken);
    try {
      expect((await reader.status()).protectedQueues).toBe(2);
      expect((await reader.listCheckpoints()).map((c) => c.epoch)).toContain(manifest.epoch);
      const dryRun = await restoreEvents(reader, { checkpoint: 'latest', prefix: 'denied.', dryRun: true });
      expect(dryRun.err).toBeUndefined();
      expect(dryRun.events.map((e) => e.event?.$case)).toEqual(['plan', 'done']);

      const restore = await restoreEvents(reader, { checkpoint: 'latest', prefix: 'denied.' });
      expect(restore.err).toBeInstanceOf(PermissionDeniedError);
      expect(grpcCode(restore.err)).toBe(grpc.status.PERMISSION_DENIED);
      expect(restore.err?.message).toBe(
        'dashboard has the read role; restoring into the source broker needs the operator role (docs/SECURITY.md#who-may-do-what); nothing was done',
      );
      expect(restore.events).toEqual([]);
      const checkpoint = await reader.checkpoint(false).catch((err: unknown) => err as Error);
      expect(checkpoint).toBeInstanceOf(PermissionDeniedError);
    } finally {
      reader.close();
    }
    const viaCli = await cli(['restore', '--checkpoint', 'latest', '--prefix', 'denied.'], readToken);
    expect(viaCli.code).not.toBe(0);
    expect(viaCli.stderr).toContain('needs the operator role');
    expect(await queuesOf(vhost, 'denied.')).toEqual([]);
  });

  it('an operator restores into the configured target, and is PERMISSION_DENIED a raw URL, append mode and deleting', async () => {
    const operator = client(operatorToken);
    try {
      const rawUrl = new URL(drUrl);
      rawUrl.password = account.password;
      const raw = await restoreEvents(operator, { checkpoint: 'latest', targetAmqpUrl: rawUrl.toString(), targetVhost: drVhost, prefix: 'op-raw.' });
      expect(raw.err).toBeInstanceOf(PermissionDeniedError);
      expect(raw.err?.message).toContain('ops has the operator role; restoring into a raw broker URL (--target-amqp) needs the admin role');
      expect(raw.err?.message).not.toContain(account.password);
      const append = await restoreEvents(operator, { checkpoint: 'latest', mode: 'append', prefix: 'op-append.' });
      expect(append.err).toBeInstanceOf(PermissionDeniedError);
      const removal = await operator.deleteCheckpoint(manifest.epoch).catch((err: unknown) => err as Error);
      expect(removal).toBeInstanceOf(PermissionDeniedError);
      expect((await operator.listCheckpoints()).map((c) => c.epoch)).toContain(manifest.epoch);
    } finally {
      operator.close();
    }
    expect(await queuesOf(drVhost, 'op-')).toEqual([]);
    expect(await queuesOf(vhost, 'op-')).toEqual([]);

    const result = await cli(['restore', '--checkpoint', String(manifest.epoch), '--target', 'dr', '--target-vhost', drVhost, '--json'], operatorToken);
    expect(result.code, result.stderr).toBe(0);
    expect(lastEvent(result)).toMatchObject({ type: 'done', failedQueues: 0, messages: PER_QUEUE * QUEUES.length });
    const withPassword = new URL(drUrl);
    withPassword.password = account.password;
    for (const q of QUEUES) expect(await readQueue(withPassword.toString(), drVhost, q.name, q.type, PER_QUEUE), q.name).toHaveLength(PER_QUEUE);
    const id = jsonLines(result.stdout).find((e) => e.type === 'plan')!.restoreId as string;
    restoreIds.push(id);
    // Redis keeps the target's name, no URL.
    expect((await record(id)).request).toMatchObject({ target: 'dr', targetAmqpUrl: '' });
  });

  it('an admin restores into a raw URL with the password from the environment (never argv); Redis keeps the URL without it', async () => {
    const inArgv = await cli(['restore', '--checkpoint', 'latest', '--target-amqp', 'amqp://someone:argv-secret@127.0.0.1:5672', '--prefix', 'argv.'], cluster.token);
    expect(inArgv.code).toBe(2);
    expect(inArgv.stderr).toContain('--target-amqp holds a password, which would be visible in the process list');
    expect(inArgv.stderr).not.toContain('argv-secret');

    const run = spawnCli(['restore', '--checkpoint', String(manifest.epoch), '--target-amqp', drUrl, '--target-vhost', drVhost, '--prefix', 'raw.', '--json'], {
      ...cluster.env,
      TIDEMARK_TARGET_AMQP_PASSWORD: account.password,
    });
    const argv = readFileSync(`/proc/${run.child.pid}/cmdline`, 'utf8');
    const result = await run.result;
    printed.push(result.stdout, result.stderr);
    expect(argv).toContain(drUrl);
    expect(argv).not.toContain(account.password);
    expect(result.code, result.stderr).toBe(0);
    expect(lastEvent(result)).toMatchObject({ type: 'done', failedQueues: 0, messages: PER_QUEUE * QUEUES.length });
    const withPassword = new URL(drUrl);
    withPassword.password = account.password;
    for (const q of QUEUES) expect(await readQueue(withPassword.toString(), drVhost, `raw.${q.name}`, q.type, PER_QUEUE), q.name).toHaveLength(PER_QUEUE);
    const id = jsonLines(result.stdout).find((e) => e.type === 'plan')!.restoreId as string;
    restoreIds.push(id);
    const stored = await record(id);
    expect(stored).toMatchObject({ rawTargetPassword: true, request: { targetAmqpUrl: drUrl } });
  });

  it('a worker records restore progress only for the queue the leader assigned it: a forged task advances nothing and publishes nothing', async () => {
    const id = restoreIds[0];
    expect(id).toBeDefined();
    const before = await redis.hgetall(`${namespace}:restore:${id}:queues`);
    const status = await cluster.client.status();
    const worker = new WorkerClient(status.workers[0].address, { tls: cluster.workerTls });
    const source = manifest.queues.find((q) => q.definition!.name === 'a-one')!;
    const progress: RestoreProgress[] = [];
    let failure: Error | undefined;
    try {
      const task = {
        leaderToken: (await worker.status(10_000)).leaderToken,
        restoreId: id,
        checkpoint: manifest.epoch,
        targetAmqpUrl: '',
        exchanges: [],
        originHeaders: true,
        confirmWindow: 0,
        queues: [
          {
            source: source.definition,
            targetVhost: vhost,
            targetName: 'forged.a-one',
            startOffset: source.startOffset,
            cutOffset: source.cutOffset,
            messages: source.messages,
            bodyBytes: source.bodyBytes,
            segments: source.segments,
            recreate: true,
            bind: false,
            append: false,
            resumeCount: 0,
            resumeAfterOffset: -1,
            resumeFromTail: false,
            rateLimit: 0,
            started: false,
            possiblyAcked: 0,
            assignment: 'worker-1/forged',
          },
        ],
      };
      for await (const p of worker.restore(task)) progress.push(p);
    } catch (err) {
      failure = err as Error;
    } finally {
      worker.close();
    }
    const said = [failure?.message ?? '', ...progress.map((p) => p.error)].join('\n');
    expect(said).toContain(`restore ${id} did not assign`);
    expect(await redis.hgetall(`${namespace}:restore:${id}:queues`)).toEqual(before);
    expect(await queuesOf(vhost, 'forged.')).toEqual([]);
  });

  it('a raw target password lives only in the memory of the coordinator that ran the restore: after a restart, an admin resumes it by sending the URL again', async () => {
    const admin = client(cluster.token);
    const rawUrl = new URL(drUrl);
    rawUrl.password = account.password;
    let id = '';
    // Slow enough to be cancelled half-way: 50 messages at 10/s.
    for await (const event of admin.restore({ checkpoint: String(manifest.epoch), targetAmqpUrl: rawUrl.toString(), targetVhost: drVhost, prefix: 'resume.', rateLimit: 10 })) {
      if (event.event?.$case === 'plan') id = event.event.value.restoreId;
      if (event.event?.$case === 'progress' && event.event.value.confirmed > 0) break;
    }
    expect(id).not.toBe('');
    restoreIds.push(id);
    expect(await admin.cancelRestore(id)).toBe('cancelled');
    // The same coordinator still holds the password: a resume needs nothing more.
    let resumed = 0;
    for await (const event of admin.resumeRestore(id)) {
      if (event.event?.$case === 'progress') resumed += 1;
      if (resumed > 0) break;
    }
    expect(await admin.cancelRestore(id)).toBe('cancelled');
    admin.close();

    await cluster.kill('coordinator');
    cluster.restart('coordinator');
    await cluster.waitForStatus((s) => s.leader && s.workers.length === 1, 'the restarted coordinator to lead');
    const restarted = client(cluster.token);
    const operator = client(operatorToken);
    try {
      const lost = await (async () => {
        for await (const event of restarted.resumeRestore(id)) void event;
      })().catch((err: unknown) => err as Error);
      expect(lost).toBeInstanceOf(Error);
      expect((lost as Error).message).toContain('whose password only the coordinator that started it kept (in memory, never in Redis)');
      expect((lost as Error).message).not.toContain(account.password);
      const denied = await (async () => {
        for await (const event of operator.resumeRestore(id, undefined, rawUrl.toString())) void event;
      })().catch((err: unknown) => err as Error);
      expect(denied).toBeInstanceOf(PermissionDeniedError);
      const events: RestoreEvent[] = [];
      for await (const event of restarted.resumeRestore(id, undefined, rawUrl.toString())) events.push(event);
      expect(events[events.length - 1].event).toMatchObject({ $case: 'done', value: { state: 'done', failedQueues: 0 } });
    } finally {
      restarted.close();
      operator.close();
    }
    // Every message arrived; a resumed queue target may hold duplicates within the confirm window.
    for (const q of QUEUES) {
      const got = await readQueue(rawUrl.toString(), drVhost, `resume.${q.name}`, q.type, PER_QUEUE);
      expect(new Set(got.map((m) => m.headers['x-tidemark-origin-offset'])).size, q.name).toBe(PER_QUEUE);
    }
  });

  it('an admin request past 1 MiB is refused RESOURCE_EXHAUSTED before it is read', async () => {
    const admin = client(cluster.token);
    try {
      const huge = await restoreEvents(admin, { checkpoint: 'latest', dryRun: true, queues: Array.from({ length: 1_500 }, (_, i) => `${'q'.repeat(1_000)}${i}`) });
      expect(grpcCode(huge.err)).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(huge.events).toEqual([]);
    } finally {
      admin.close();
    }
  });

  it('a coordinator with no callers configured refuses to start, unless authentication is explicitly off', async () => {
    const env = { ...cluster.env, TIDEMARK_AUTH_TOKENS_FILE: '', TIDEMARK_NAMESPACE: uniqueName('tmnoauth'), TIDEMARK_ID: 'no-auth' };
    const result = await runCli(['coordinator', '--listen', '127.0.0.1:0'], env, 20_000);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('the admin API has no callers configured: set TIDEMARK_AUTH_TOKENS_FILE');
    expect(result.stderr).toContain('TIDEMARK_AUTH_DISABLED=true');
  });

  it('no password or token is in Redis, the CLI output, the logs or any process argv', async () => {
    const secrets = { 'target password': account.password, 'admin token': cluster.token, 'read token': readToken, 'operator token': operatorToken };
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', `${namespace}:*`, 'COUNT', 500);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    const values = await Promise.all(
      keys.map(async (key) => {
        const type = await redis.type(key);
        if (type === 'string') return (await redis.get(key)) ?? '';
        if (type === 'hash') return JSON.stringify(await redis.hgetall(key));
        if (type === 'zset') return (await redis.zrange(key, 0, -1, 'WITHSCORES')).join(' ');
        if (type === 'list') return (await redis.lrange(key, 0, -1)).join(' ');
        if (type === 'set') return (await redis.smembers(key)).join(' ');
        return '';
      }),
    );
    const inRedis = keys.join('\n') + values.join('\n');
    // The scan saw the restores it is about.
    for (const id of restoreIds) expect(inRedis).toContain(id);
    const logs = readFileSync(cluster.logFile, 'utf8');
    // The audit line: who called what, as fields.
    expect(clusterLogEvents(cluster.logFile, 'admin API call', 'coordinator')).toContainEqual(
      expect.objectContaining({ caller: 'ops', role: 'operator', via: 'token', method: 'restore' }),
    );
    const argv = readdirSync('/proc')
      .filter((entry) => /^\d+$/.test(entry))
      .map((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\u0000', ' ');
        } catch {
          return '';
        }
      })
      .join('\n');
    expect(argv).toContain('coordinator --listen');
    for (const [what, secret] of Object.entries(secrets)) {
      expect(inRedis.includes(secret), `${what} in Redis`).toBe(false);
      expect(printed.join('\n').includes(secret), `${what} in CLI output`).toBe(false);
      expect(logs.includes(secret), `${what} in the logs`).toBe(false);
      expect(argv.includes(secret), `${what} in a process's argv`).toBe(false);
    }
  });
});
