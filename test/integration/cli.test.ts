/**
 * The tidemark CLI as an operator runs it: the built binary in child processes against a real
 * two-worker cluster on RabbitMQ, Redis and a file store. Pins the CLI contract of the brief:
 * every command, its --json shapes (services/cli/output.ts), exit codes and error messages, and
 * that `cluster up` starts and stops its processes as a unit.
 */
import amqp from 'amqplib';
import { Redis } from 'ioredis';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readQueue } from '../helpers/broker.js';
import { CLI, jsonLines, runCli, type CliResult } from '../helpers/cli.js';
import { freePort, startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, managementApi, testServices, uniqueName, type TestServices } from '../helpers/services.js';

const EXCHANGE = 'events';
const QUEUES = [
  { name: 'q-classic', type: 'classic' },
  { name: 'q-quorum', type: 'quorum' },
  { name: 'q-stream', type: 'stream' },
  { name: 'q-classic-2', type: 'classic' },
] as const;
/** Messages published per queue before the first checkpoint (different per queue so counts are told apart). */
const FIRST = new Map<string, number>(QUEUES.map((q, i) => [q.name, 3 + i]));
/** Messages published per queue between the first and the second checkpoint. */
const SECOND = 2;
const firstTotal = [...FIRST.values()].reduce((a, b) => a + b, 0);


let services: TestServices;
let vhost: string;
let cluster: TestCluster;
/** Redis namespaces this file's clusters used; their keys are deleted at the end. */
const namespaces: string[] = [];
/** Epochs of the checkpoints this file takes, oldest first. */
const epochs: number[] = [];
/** Message ids published to each queue, in publish order. */
const published = new Map<string, string[]>(QUEUES.map((q) => [q.name, []]));

/** Runs the built CLI against this file's cluster unless told otherwise. */
function tidemark(args: string[], env: NodeJS.ProcessEnv = cluster.env, timeoutMs = 60_000): Promise<CliResult> {
  return runCli(args, env, timeoutMs);
}

/** Runs a --json command that must succeed and parses its stdout as one JSON document. */
async function tidemarkJson<T>(args: string[], env?: NodeJS.ProcessEnv): Promise<T> {
  const result = await tidemark(args, env);
  expect(result.code, `tidemark ${args.join(' ')} failed: ${result.stderr}`).toBe(0);
  return JSON.parse(result.stdout) as T;
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function childPids(pid: number): Promise<number[]> {
  const result = await new Promise<string>((resolve) => execFile('ps', ['-o', 'pid=', '--ppid', String(pid)], (_error, stdout) => resolve(stdout)));
  return result
    .split('\n')
    .map((line) => Number(line.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
}

async function queueExists(name: string): Promise<boolean> {
  const response = await managementApi(services.managementUrl, 'GET', `queues/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}`);
  await response.body?.cancel();
  if (response.status !== 200 && response.status !== 404) throw new Error(`management API answered ${response.status} for queue ${name}`);
  return response.status === 200;
}

/** Publishes through the exchange with publisher confirms; remembers the message ids per queue. */
async function publish(counts: Map<string, number>, batch: string): Promise<void> {
  const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
  try {
    const channel = await connection.createConfirmChannel();
    for (const [queue, count] of counts) {
      for (let i = 0; i < count; i += 1) {
        const messageId = `${queue}-${batch}-${i}`;
        channel.publish(EXCHANGE, queue, Buffer.from(`body of ${messageId}`), { messageId, persistent: true, headers: { batch, i } });
        published.get(queue)!.push(messageId);
      }
    }
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
}

async function deleteNamespaces(): Promise<void> {
  const redis = new Redis(services.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    for (const namespace of namespaces) {
      const keys = await redis.keys(`${namespace}:*`);
      if (keys.length > 0) await redis.del(...keys);
    }
  } finally {
    redis.disconnect();
  }
}

const tidemarkEnv = (): NodeJS.ProcessEnv => Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('TIDEMARK_')));

describe('the tidemark CLI against a two-worker cluster', () => {
  beforeAll(async () => {
    services = await testServices();
    vhost = uniqueName('tm-cli');
    await createTestVhost(services.managementUrl, vhost);
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createChannel();
    await channel.assertExchange(EXCHANGE, 'direct', { durable: true });
    for (const q of QUEUES) {
      await channel.assertQueue(q.name, { durable: true, arguments: { 'x-queue-type': q.type } });
      await channel.bindQueue(q.name, EXCHANGE, q.name);
    }
    await connection.close();
    const namespace = uniqueName('tmcli');
    namespaces.push(namespace);
    cluster = await startTestCluster({ services, namespace, protect: `${vhost}:q-*`, store: { kind: 'file' }, workers: 2 });
    await cluster.waitForStatus(
      (s) => s.leader && s.protectedQueues === QUEUES.length && s.workers.length === 2 && s.workers.reduce((n, w) => n + w.queues, 0) === QUEUES.length,
      '4 protected queues spread over 2 workers',
    );
  });

  afterAll(async () => {
    await cluster?.stop();
    if (cluster) rmSync(dirname(cluster.logFile), { recursive: true, force: true });
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
    if (services) await deleteNamespaces();
  });

  it('status --json reports the leader, both workers and the protected queues', async () => {
    const status = await tidemarkJson<Record<string, any>>(['status', '--json']);
    expect(status).toMatchObject({
      coordinator: 'coordinator',
      leader: true,
      store: cluster.storeUrl,
      intervalMs: 0,
      protectedQueues: QUEUES.length,
      latestCheckpoint: null,
      rounds: { committed: 0, aborted: 0 },
    });
    expect(status.leaderToken).toBeGreaterThan(0);
    expect(status.workers).toHaveLength(2);
    for (const w of status.workers) {
      expect(w.id).toMatch(/^worker-[12]$/);
      expect(w.address).toMatch(/^[\w.-]+:\d+$/);
      expect(typeof w.queues).toBe('number');
      expect(w.lagMessages).toBe(0);
      expect(w.maxLagSeconds).toBe(0);
    }
    expect(status.captureLag).toEqual([]);
    expect(status.workers.reduce((n: number, w: { queues: number }) => n + w.queues, 0)).toBe(QUEUES.length);
  });

  it('status prints a human summary', async () => {
    const result = await tidemark(['status']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^coordinator coordinator \(leader, token \d+\), store file:\/\//);
    expect(result.stdout).toContain(`protected queues: ${QUEUES.length}; latest checkpoint: none`);
    expect(result.stdout).toMatch(/^WORKER\s+ADDRESS\s+QUEUES\s+LAG\s+HEALTH$/m);
    // Nothing published yet: every capture is caught up.
    expect(result.stdout).toMatch(/^worker-1\s+\S+:\d+\s+\d+\s+0\s+ok$/m);
    expect(result.stdout).toMatch(/^worker-2\s+\S+:\d+\s+\d+\s+0\s+ok$/m);
    expect(() => JSON.parse(result.stdout)).toThrow();
  });

  it('checkpoint --wait --json commits a round over what was published', async () => {
    await publish(FIRST, 'a');
    const reply = await tidemarkJson<Record<string, any>>(['checkpoint', '--wait', '--json']);
    expect(reply).toMatchObject({ outcome: 'committed', reason: '' });
    expect(reply.epoch).toBeGreaterThan(0);
    expect(reply.id).toBe(String(reply.epoch));
    expect(typeof reply.durationMs).toBe('number');
    epochs.push(reply.epoch);
  });

  it('checkpoint --json without --wait answers at once with a new epoch', async () => {
    await publish(new Map(QUEUES.map((q) => [q.name, SECOND])), 'b');
    const reply = await tidemarkJson<Record<string, any>>(['checkpoint', '--json']);
    expect(['pending', 'committed']).toContain(reply.outcome);
    expect(reply.epoch).toBeGreaterThan(epochs[0]);
    expect(reply.id).toBe(String(reply.epoch));
    epochs.push(reply.epoch);
    await cluster.waitForStatus((s) => s.latestCheckpoint === reply.epoch, `checkpoint ${reply.epoch} to commit`, 30_000);
  });

  it('checkpoints list --json lists the checkpoints oldest first with the published counts', async () => {
    const { checkpoints } = await tidemarkJson<{ checkpoints: Array<Record<string, any>> }>(['checkpoints', 'list', '--json']);
    expect(checkpoints.map((c) => c.epoch)).toEqual(epochs);
    expect(checkpoints.map((c) => c.id)).toEqual(epochs.map(String));
    const [first, second] = checkpoints;
    expect(first).toMatchObject({ queues: QUEUES.length, messages: firstTotal, parentEpoch: 0, full: true });
    expect(second).toMatchObject({ queues: QUEUES.length, messages: firstTotal + SECOND * QUEUES.length, parentEpoch: epochs[0] });
    for (const c of checkpoints) {
      expect(c.bodyBytes).toBeGreaterThan(0);
      expect(Date.parse(c.startedAt)).toBeLessThanOrEqual(Date.parse(c.committedAt));
      expect(new Date(c.committedAt).toISOString()).toBe(c.committedAt);
    }
  });

  it('checkpoints show latest --json describes every queue of the newest checkpoint', async () => {
    const m = await tidemarkJson<Record<string, any>>(['checkpoints', 'show', 'latest', '--json']);
    expect(m).toMatchObject({ id: String(epochs[1]), epoch: epochs[1], parentEpoch: epochs[0], coordinator: 'coordinator', messages: firstTotal + SECOND * QUEUES.length });
    expect(m.formatVersion).toBeGreaterThan(0);
    expect(m.leaderToken).toBeGreaterThan(0);
    expect(typeof m.full).toBe('boolean');
    expect(new Date(m.committedAt).toISOString()).toBe(m.committedAt);
    expect(m.queues.map((q: { name: string }) => q.name).sort()).toEqual(QUEUES.map((q) => q.name).sort());
    for (const q of m.queues) {
      const spec = QUEUES.find((s) => s.name === q.name)!;
      expect(q).toMatchObject({ vhost, type: spec.type, messages: FIRST.get(q.name)! + SECOND });
      expect(q.journal).toEqual(expect.any(String));
      expect(q.cutOffset).toBeGreaterThan(q.startOffset);
      expect(q.worker).toMatch(/^worker-[12]$/);
      expect(q.segments).toBeGreaterThan(0);
      expect(typeof q.baseEpoch).toBe('number');
      expect(q.bindings).toContainEqual({ source: EXCHANGE, routingKey: q.name });
    }
  });

  it('checkpoints show ID prints a header line and a table of queues', async () => {
    const result = await tidemark(['checkpoints', 'show', String(epochs[0])]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^checkpoint ${epochs[0]} committed \\S+ \\(full\\), ${firstTotal} messages, `));
    expect(result.stdout).toMatch(/^VHOST\s+QUEUE\s+TYPE\s+HELD\s+HISTORY\s+SIZE\s+CUT\s+SEGMENTS\s+STATE$/m);
    // HELD is the contents (for a stream what it retained; "unknown" while no head is known), HISTORY everything captured.
    for (const q of QUEUES) expect(result.stdout).toMatch(new RegExp(`^${vhost}\\s+${q.name}\\s+${q.type}\\s+(\\d+|unknown)\\s+${FIRST.get(q.name)}\\s.*\\scomplete$`, 'm'));
    expect(result.stdout).not.toContain('POSSIBLY INCOMPLETE');
  });

  it('restore --dry-run --json prints the plan and creates no queue', async () => {
    const result = await tidemark(['restore', '--checkpoint', 'latest', '--prefix', 'r.', '--dry-run', '--json']);
    expect(result.code, result.stderr).toBe(0);
    const events = jsonLines(result.stdout);
    const plan = events.find((e) => e.type === 'plan') as Record<string, any>;
    expect(plan).toMatchObject({ checkpoint: String(epochs[1]), dryRun: true, messages: firstTotal + SECOND * QUEUES.length });
    expect(plan.restoreId).toEqual(expect.any(String));
    expect(plan.bodyBytes).toBeGreaterThan(0);
    expect(plan.queues).toHaveLength(QUEUES.length);
    for (const q of plan.queues) {
      expect(q.target).toEqual({ vhost, queue: `r.${q.source.queue}` });
      expect(q.source.vhost).toBe(vhost);
      expect(q.messages).toBe(FIRST.get(q.source.queue)! + SECOND);
      expect(q.worker).toMatch(/^worker-[12]$/);
      expect(typeof q.bind).toBe('boolean');
      // No head is known yet for queues (the hold bound is longer than this test), so each restores
      // its history; the stream's head follows its own retention (none: everything it holds).
      expect(q.restoreFrom).toBe(q.source.queue === 'q-stream' ? 'contents' : 'history');
      expect(q.restoreFromReason).toEqual(expect.any(String));
    }
    expect(events.filter((e) => e.type === 'progress')).toEqual([]);
    expect(events[events.length - 1]).toMatchObject({ type: 'done', messages: 0, queues: QUEUES.length, failedQueues: 0 });
    for (const q of QUEUES) expect(await queueExists(`r.${q.name}`), `r.${q.name} exists after a dry run`).toBe(false);
  });

  it('restore --map --queues --json streams events ending in done, and the target holds the checkpoint prefix in order', async () => {
    const source = 'q-quorum';
    const target = 'copy-quorum';
    const want = published.get(source)!.slice(0, FIRST.get(source));
    const result = await tidemark(['restore', '--checkpoint', String(epochs[0]), '--map', `${source}=${target}`, '--queues', source, '--json']);
    expect(result.code, result.stderr).toBe(0);
    const events = jsonLines(result.stdout);
    expect(events[0]).toMatchObject({ type: 'plan', checkpoint: String(epochs[0]), dryRun: false, messages: want.length });
    expect((events[0] as Record<string, any>).queues).toHaveLength(1);
    const last = events[events.length - 1] as Record<string, any>;
    expect(last).toMatchObject({ type: 'done', restoreId: (events[0] as Record<string, any>).restoreId, messages: want.length, queues: 1, failedQueues: 0 });
    expect(typeof last.durationMs).toBe('number');
    const progress = events.filter((e) => e.type === 'progress') as Array<Record<string, any>>;
    expect(progress.length).toBeGreaterThan(0);
    expect(progress[progress.length - 1]).toMatchObject({
      source: { vhost, queue: source },
      target: { vhost, queue: target },
      confirmed: want.length,
      total: want.length,
      done: true,
      error: null,
    });
    const restored = await readQueue(services.amqpUrl, vhost, target, 'quorum', want.length);
    expect(restored.map((m) => m.properties.messageId)).toEqual(want);
    expect(restored.map((m) => m.body.toString())).toEqual(want.map((id) => `body of ${id}`));
  });

  it('restore --at picks the latest checkpoint committed at or before the time, and prints a plain progress report', async () => {
    const source = 'q-stream';
    const dryRun = jsonLines((await tidemark(['restore', '--at', new Date().toISOString(), '--queues', `${vhost}:${source}`, '--prefix', 'p.', '--dry-run', '--json'])).stdout);
    expect(dryRun[0]).toMatchObject({ type: 'plan', checkpoint: String(epochs[1]), dryRun: true });
    const result = await tidemark(['restore', '--at', new Date().toISOString(), '--queues', `${vhost}:${source}`, '--prefix', 'p.']);
    expect(result.code, result.stderr).toBe(0);
    const want = published.get(source)!;
    expect(result.stdout).toContain(`restoring checkpoint ${epochs[1]}: 1 queue(s), ${want.length} messages`);
    expect(result.stdout).toContain(`${vhost}:${source} -> ${vhost}:p.${source} (stream, ${want.length} messages`);
    expect(result.stdout).toMatch(new RegExp(`^restore r${epochs[1]}-\\w+: ${want.length} messages into 1/1 queue\\(s\\)`, 'm'));
    expect(() => JSON.parse(result.stdout)).toThrow();
    const restored = await readQueue(services.amqpUrl, vhost, `p.${source}`, 'stream', want.length);
    expect(restored.map((m) => m.properties.messageId)).toEqual(want);
  });

  it('restore refuses a target that already holds messages before publishing anything, and --append adds to it', async () => {
    const source = 'q-stream';
    const want = published.get(source)!;
    // A dry run shows the conflict (exit 3: the restore would be refused)...
    const dry = await tidemark(['restore', '--checkpoint', 'latest', '--queues', `${vhost}:${source}`, '--prefix', 'p.', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(3);
    expect(dry.stdout).toMatch(/CONFLICT .*already holds messages/);
    // ...and the restore is refused before it starts (exit 1), naming the target.
    const again = await tidemark(['restore', '--checkpoint', 'latest', '--queues', `${vhost}:${source}`, '--prefix', 'p.']);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`${vhost}/p.${source}`);
    expect(again.stderr).toContain('already holds messages');
    expect(await readQueue(services.amqpUrl, vhost, `p.${source}`, 'stream', want.length)).toHaveLength(want.length);

    const appended = await tidemark(['restore', '--checkpoint', 'latest', '--queues', `${vhost}:${source}`, '--prefix', 'p.', '--append']);
    expect(appended.code, appended.stdout + appended.stderr).toBe(0);
    const restored = await readQueue(services.amqpUrl, vhost, `p.${source}`, 'stream', 2 * want.length);
    expect(restored.map((m) => m.properties.messageId)).toEqual([...want, ...want]);
  });

  it('restore without --checkpoint or --at exits 2 and says what to pass', async () => {
    const result = await tidemark(['restore', '--json']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--checkpoint ID\|latest or --at TIME/);
    expect(result.stdout).toBe('');
  });

  it('checkpoints show of an unknown id fails with "does not exist"', async () => {
    const result = await tidemark(['checkpoints', 'show', '999999', '--json']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('does not exist');
    expect(result.stdout).toBe('');
  });

  it('restore --map without "=" exits 2', async () => {
    const result = await tidemark(['restore', '--checkpoint', 'latest', '--map', 'bad']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--map "bad" must be SOURCE=TARGET');
  });

  it('an unknown command exits 2', async () => {
    const result = await tidemark(['checkpiont']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("unknown command 'checkpiont'");
  });

  it('status against a coordinator address where nothing listens fails and says how to start one', async () => {
    const port = await freePort();
    const result = await tidemark(['status', '--json', '--coordinator', `127.0.0.1:${port}`]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(`cannot reach the coordinator at 127.0.0.1:${port}`);
    expect(result.stdout).toBe('');
  });

  it('coordinator with an invalid TIDEMARK_INTERVAL exits 2 naming the setting', async () => {
    const port = await freePort();
    // A fresh namespace: were the setting accepted, this coordinator must not join the test cluster.
    const namespace = uniqueName('tmbad');
    namespaces.push(namespace);
    const env = { ...cluster.env, TIDEMARK_INTERVAL: 'soon', TIDEMARK_NAMESPACE: namespace };
    const result = await tidemark(['coordinator', '--listen', `127.0.0.1:${port}`], env, 20_000);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/interval/i);
    expect(result.stderr).toContain('"soon" is not a duration');
    expect(result.stderr).toContain('TIDEMARK_INTERVAL');
  });

  it('coordinator on an address already in use exits 2 at once instead of hanging', async () => {
    const namespace = uniqueName('tmbusy');
    namespaces.push(namespace);
    // The test cluster's coordinator already holds this address.
    const env = { ...cluster.env, TIDEMARK_NAMESPACE: namespace };
    const started = Date.now();
    const result = await tidemark(['coordinator', '--listen', cluster.address], env, 20_000);
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toContain('address in use');
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  describe('cluster up', () => {
    let up: ChildProcess | undefined;
    let pids: number[] = [];
    let dir: string | undefined;
    let output = '';

    afterAll(() => {
      for (const pid of [...pids, up?.pid ?? 0]) if (pid > 0 && alive(pid)) process.kill(pid, 'SIGKILL');
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('starts a coordinator and two workers, and SIGTERM stops all of them', async () => {
      const port = await freePort();
      const namespace = uniqueName('tmup');
      namespaces.push(namespace);
      dir = mkdtempSync(join(tmpdir(), 'tm-cli-up-'));
      const env: NodeJS.ProcessEnv = {
        ...tidemarkEnv(),
        TIDEMARK_AMQP_URL: services.amqpUrl,
        TIDEMARK_MANAGEMENT_URL: services.managementUrl,
        TIDEMARK_REDIS_URL: services.redisUrl,
        TIDEMARK_STORE: `file://${join(dir, 'store')}`,
        TIDEMARK_NAMESPACE: namespace,
        TIDEMARK_INTERVAL: '0',
        // TLS is on by default: cluster up makes a local CA here, and the CLI below finds it.
        TIDEMARK_TLS_DIR: join(dir, 'tls'),
      };
      up = spawn(process.execPath, [CLI, 'cluster', 'up', '--workers', '2', '--port', String(port)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      up.stdout!.on('data', (chunk: Buffer) => void (output += chunk.toString()));
      up.stderr!.on('data', (chunk: Buffer) => void (output += chunk.toString()));
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => up!.once('exit', (code, signal) => resolve({ code, signal })));
      const address = `127.0.0.1:${port}`;

      const until = Date.now() + 60_000;
      let workers = -1;
      while (Date.now() < until && up.exitCode === null) {
        const result = await tidemark(['status', '--json', '--coordinator', address], env, 10_000);
        if (result.code === 0) {
          workers = (JSON.parse(result.stdout) as { workers: unknown[] }).workers.length;
          if (workers === 2) break;
        }
        await new Promise((r) => setTimeout(r, 300));
      }
      expect(workers, `cluster up never reported 2 workers; its output:\n${output}`).toBe(2);
      // The status page on loopback, and the read-only token cluster up wrote for it (issue 15).
      const pageUrl = /status page at (https:\/\/127\.0\.0\.1:\d+\/)/.exec(output)?.[1];
      expect(pageUrl, output).toBeDefined();
      expect(output).toMatch(/sign in with the read-only token in \S*\.tidemark\/status-token/);
      const statusToken = readFileSync('.tidemark/status-token', 'utf8').trim();
      expect(output).not.toContain(statusToken);
      const page = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        httpsGet(`${pageUrl}api/status`, { ca: readFileSync(join(dir!, 'tls', 'ca.pem')), headers: { authorization: `Bearer ${statusToken}` } }, (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        }).on('error', reject);
      });
      expect(page.status, page.body).toBe(200);
      expect(JSON.parse(page.body).caller).toEqual({ name: 'status-page', role: 'read' });
      // Nothing is protected in this cluster: a round aborts, and the CLI exits 3 with the reason.
      const aborted = await tidemark(['checkpoint', '--wait', '--json', '--coordinator', address], env);
      expect(aborted.code, aborted.stderr).toBe(3);
      expect(JSON.parse(aborted.stdout)).toMatchObject({ outcome: 'aborted', reason: expect.stringContaining('no protected queues') });

      pids = await childPids(up.pid!);
      expect(pids, 'cluster up runs a coordinator and two workers as child processes').toHaveLength(3);
      // Mutual TLS on the local CA it generated, owner-only; a plaintext CLI is turned away.
      expect(output).toMatch(/mutual TLS with the local CA in .*tls \(generated now\)/);
      expect(statSync(join(dir, 'tls')).mode & 0o777).toBe(0o700);
      expect(statSync(join(dir, 'tls', 'client-key.pem')).mode & 0o777).toBe(0o600);
      const plaintext = await tidemark(['status', '--coordinator', address], { ...env, TIDEMARK_TLS: 'off' });
      expect(plaintext.code).not.toBe(0);
      expect(plaintext.stderr).toMatch(/needs TLS here too/);

      up.kill('SIGTERM');
      const exit = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 30_000))]);
      expect(exit, `cluster up did not exit after SIGTERM; its output:\n${output}`).not.toBe('timeout');
      expect(exit).toEqual({ code: 0, signal: null });
      expect(pids.filter(alive), 'child processes left running').toEqual([]);
      expect(await listening(port)).toBe(false);
      const status = await tidemark(['status', '--coordinator', address], env);
      expect(status.code).not.toBe(0);
      expect(status.stderr).toContain('cannot reach the coordinator');
    });
  });
});
