/**
 * Restore as operators run it (issue 4), through the real CLI against a real cluster: relative
 * --at, dry-run plans, modes and their conflicts, concurrency and rate limits, verify and the
 * restore drill, and resumption after each kind of crash (CLI, worker, leader) and after Ctrl-C.
 * Every test checks the restored messages themselves.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TidemarkClient, type RestoreEvent } from '../../services/client/index.js';
import { ManagementClient } from '../../services/core/amqp/management-client.js';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import type { CheckpointManifest } from '../../services/gen/tidemark/v1/store.js';
import { declareBoundQueues, readQueue } from '../helpers/broker.js';
import { jsonLines, runCli, spawnCli, type CliResult } from '../helpers/cli.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { RoundRobinProducer } from '../helpers/producers.js';
import { amqpUrlForVhost, createTestUser, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';
import { RestoredQueues } from '../helpers/verify.js';

const QUEUES = [
  { name: 'o-classic', type: 'classic' },
  { name: 'o-quorum', type: 'quorum' },
  { name: 'o-stream', type: 'stream' },
] as const;
const PER_QUEUE = 600;
/** The workers' confirm window: the bound on duplicates a resumed queue target may hold. */
const WINDOW = 16;
/** Slow enough that a crash lands mid-restore: 1,800 messages take about 3 s. */
const SLOW = ['--rate', '600'];

let services: TestServices;
let vhost: string;
let cluster: TestCluster;
let first: CheckpointManifest;
let second: CheckpointManifest;
let secondCommittedAt = 0;

const cli = (args: string[], timeoutMs?: number): Promise<CliResult> => runCli(args, cluster.env, timeoutMs);

async function publish(count: number): Promise<void> {
  const producer = new RoundRobinProducer(services.amqpUrl, vhost, 'ops', QUEUES.map((q) => q.name), { maxMessages: count, window: 64 });
  producer.start();
  await producer.finished();
  expect(producer.total()).toBe(count);
}

async function checkpoint(): Promise<CheckpointManifest> {
  const round = await cluster.client.checkpoint(true);
  expect(round.outcome, round.reason).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
  return cluster.client.getCheckpoint(String(round.epoch));
}

function lastEvent(result: CliResult): Record<string, unknown> {
  const lines = jsonLines(result.stdout);
  return lines[lines.length - 1];
}

/** Waits until the spawned CLI has printed a progress event with some messages confirmed; returns the restore id. */
async function restoreUnderWay(stdout: () => string): Promise<string> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const lines = stdout().split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
    const plan = lines.find((l) => l.type === 'plan');
    if (plan && lines.some((l) => l.type === 'progress' && (l.confirmed as number) > 100)) return plan.restoreId as string;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the restore did not get under way; output so far:\n${stdout()}`);
}

async function queueExists(name: string): Promise<boolean> {
  const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
  try {
    const channel = await connection.createChannel();
    channel.on('error', () => {});
    return await channel.checkQueue(name).then(
      () => true,
      () => false,
    );
  } finally {
    await connection.close().catch(() => {});
  }
}

const bothWorkers = (s: { workers: Array<{ workerId: string; queues: number }>; protectedQueues: number }) =>
  s.protectedQueues === QUEUES.length && s.workers.length === 2 && s.workers.reduce((n, w) => n + w.queues, 0) === QUEUES.length;

describe('restore operations (issue 4)', () => {
  beforeAll(async () => {
    services = await testServices();
    vhost = uniqueName('tm-ops');
    await createTestVhost(services.managementUrl, vhost);
    await declareBoundQueues(services.amqpUrl, vhost, 'ops', QUEUES);
    cluster = await startTestCluster({
      services,
      namespace: uniqueName('tmo'),
      protect: `${vhost}:o-*`,
      store: { kind: 'file' },
      workers: 2,
      extraEnv: { TIDEMARK_LEASE_TIME: '3s', TIDEMARK_DISCOVERY_INTERVAL: '1s', TIDEMARK_CONFIRM_WINDOW: String(WINDOW) },
    });
    await cluster.waitForStatus(bothWorkers, 'three queues assigned to two workers');
    await publish(PER_QUEUE * QUEUES.length);
    first = await checkpoint();
    // Far enough apart for a relative --at to fall between them.
    await new Promise((r) => setTimeout(r, 6_000));
    await publish(30);
    second = await checkpoint();
    secondCommittedAt = Date.now();
  }, 120_000);

  afterAll(async () => {
    await cluster?.stop();
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
  });

  it('--at takes relative times: -4s picks the checkpoint before the newest; a time before any checkpoint, or no time at all, is refused', async () => {
    const plan = jsonLines((await cli(['restore', '--at', '-4s', '--prefix', 'at.', '--dry-run', '--json'])).stdout)[0];
    // Only meaningful while the newest checkpoint is younger than 4 s.
    expect(Date.now() - secondCommittedAt).toBeLessThan(4_000);
    expect(plan).toMatchObject({ type: 'plan', checkpoint: String(first.epoch) });
    const newest = jsonLines((await cli(['restore', '--at', 'now', '--prefix', 'at.', '--dry-run', '--json'])).stdout)[0];
    expect(newest).toMatchObject({ checkpoint: String(second.epoch) });

    const tooEarly = await cli(['restore', '--at', '-1d', '--prefix', 'at.']);
    expect(tooEarly.code).toBe(1);
    expect(tooEarly.stderr).toMatch(/no checkpoint/i);
    const garbage = await cli(['restore', '--at', 'yesterday', '--prefix', 'at.']);
    expect(garbage.code).toBe(2);
    expect(garbage.stderr).toMatch(/-15m/);
    expect(await queueExists('at.o-classic')).toBe(false);
  });

  it('a dry run plans every queue with its worker, counts and a time estimate, and declares nothing', async () => {
    const result = await cli(['restore', '--checkpoint', String(first.epoch), '--prefix', 'dry.', '--dry-run', '--json']);
    expect(result.code, result.stderr).toBe(0);
    const [plan, done] = jsonLines(result.stdout);
    expect(plan).toMatchObject({ type: 'plan', dryRun: true, messages: PER_QUEUE * QUEUES.length, mode: 'recreate', concurrency: 8 });
    expect(plan.estimatedMs as number).toBeGreaterThan(0);
    expect(plan.estimateBasis).toMatch(/msg\/s per queue/);
    const queues = plan.queues as Array<Record<string, unknown>>;
    expect(queues.map((q) => q.messages)).toEqual(QUEUES.map(() => PER_QUEUE));
    for (const q of queues) {
      expect(['worker-1', 'worker-2']).toContain(q.worker);
      expect(q).toMatchObject({ targetExists: false, conflict: null, alreadyConfirmed: 0 });
    }
    expect(done).toMatchObject({ type: 'done', messages: 0 });
    for (const q of QUEUES) expect(await queueExists(`dry.${q.name}`)).toBe(false);
  });

  it('modes: recreate refuses a non-empty target, refuse any existing one, append adds to it; a conflict stops the whole restore before anything is published', async () => {
    const restored = new RestoredQueues(services.amqpUrl, vhost);
    const ok = await cli(['restore', '--checkpoint', String(first.epoch), '--prefix', 'm.']);
    expect(ok.code, ok.stderr).toBe(0);

    for (const mode of [[], ['--mode', 'recreate'], ['--mode', 'refuse']]) {
      const again = await cli(['restore', '--checkpoint', String(first.epoch), '--prefix', 'm.', ...mode]);
      expect(again.code, `${mode.join(' ')}: ${again.stderr}`).toBe(1);
      for (const q of QUEUES) expect(again.stderr).toContain(`${vhost}/m.${q.name}`);
      expect(again.stderr).toMatch(mode[1] === 'refuse' ? /exists/ : /holds messages/);
    }
    // One conflicting target among good ones: none of the good ones is even declared.
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createChannel();
    await channel.assertQueue('taken', { durable: true });
    channel.sendToQueue('taken', Buffer.from('not ours'));
    await channel.close();
    await connection.close();
    const mixed = await cli(['restore', '--checkpoint', String(first.epoch), '--prefix', 'x.', '--map', 'o-classic=taken']);
    expect(mixed.code).toBe(1);
    expect(mixed.stderr).toContain(`${vhost}/taken`);
    expect(await queueExists('x.o-quorum')).toBe(false);
    expect(await queueExists('x.o-stream')).toBe(false);
    expect(await readQueue(services.amqpUrl, vhost, 'taken', 'classic', 1)).toHaveLength(1);

    const appended = await cli(['restore', '--checkpoint', String(first.epoch), '--prefix', 'm.', '--mode', 'append']);
    expect(appended.code, appended.stderr).toBe(0);
    for (const q of QUEUES) {
      const messages = await restored.read(first, 'm.', q.name);
      const offsets = messages.map((m) => Number(m.headers['x-tidemark-origin-offset']));
      expect(messages).toHaveLength(2 * PER_QUEUE);
      expect(offsets.slice(PER_QUEUE), `${q.name}: the appended copy follows the first, in order`).toEqual(offsets.slice(0, PER_QUEUE));
    }
  });

  it('--concurrency 1 restores one queue at a time and --rate bounds the speed; order is kept', async () => {
    const result = await cli(['restore', '--checkpoint', String(first.epoch), '--prefix', 'c.', '--concurrency', '1', '--rate', '1000', '--json']);
    expect(result.code, result.stderr).toBe(0);
    const events = jsonLines(result.stdout);
    let active: string | undefined;
    for (const e of events.filter((x) => x.type === 'progress')) {
      const queue = (e.source as { queue: string }).queue;
      expect(active === undefined || active === queue, `${queue} began while ${active} was still restoring`).toBe(true);
      active = e.done ? undefined : queue;
    }
    const done = events[events.length - 1];
    expect(done).toMatchObject({ type: 'done', failedQueues: 0, messages: PER_QUEUE * QUEUES.length, state: 'done' });
    // 1,800 messages at 1,000/s cannot take less than about 1.8 s.
    expect(done.durationMs as number).toBeGreaterThanOrEqual(1_500);
    await new RestoredQueues(services.amqpUrl, vhost).expectExactPrefixes(first, 'c.');
  });

  it('--target-amqp restores through the URL it names (its broker, user and vhost), and refuses one it cannot log in with before publishing', async () => {
    const other = uniqueName('tm-ops-target');
    await createTestVhost(services.managementUrl, other);
    const account = await createTestUser(services.managementUrl, other);
    try {
      const url = new URL(services.amqpUrl);
      url.hostname = '127.0.0.1';
      url.username = account.user;
      url.password = '';
      // The password goes in the environment, never in argv (docs/SECURITY.md#restore-targets).
      const withPassword = (password: string) => ({ ...cluster.env, TIDEMARK_TARGET_AMQP_PASSWORD: password });
      const refused = await runCli(['restore', '--checkpoint', String(first.epoch), '--target-amqp', url.toString(), '--target-vhost', other], withPassword('wrong'));
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/cannot|refused/i);
      expect(refused.stderr).not.toContain('wrong');

      const result = await runCli(['restore', '--checkpoint', String(first.epoch), '--target-amqp', url.toString(), '--target-vhost', other, '--json'], withPassword(account.password));
      url.password = account.password;
      expect(result.code, result.stderr).toBe(0);
      expect(lastEvent(result)).toMatchObject({ type: 'done', failedQueues: 0, messages: PER_QUEUE * QUEUES.length });
      // The same messages, in the same order, as a restore into this file's own vhost.
      expect((await cli(['restore', '--checkpoint', String(first.epoch), '--prefix', 't.'])).code).toBe(0);
      const reference = new RestoredQueues(services.amqpUrl, vhost);
      await reference.expectExactPrefixes(first, 't.');
      for (const q of QUEUES) {
        const got = await readQueue(url.toString(), other, q.name, q.type, PER_QUEUE);
        const want = await reference.read(first, 't.', q.name);
        expect(got.map((m) => m.body.toString('hex')), q.name).toEqual(want.map((m) => m.body.toString('hex')));
        expect(got.map((m) => m.headers['x-tidemark-origin-offset'])).toEqual(want.map((m) => m.headers['x-tidemark-origin-offset']));
      }
    } finally {
      await deleteTestVhost(services.managementUrl, other);
      await account.remove();
    }
  });

  it('verify and restore-drill pass on intact data, and name a corrupted segment', async () => {
    const verified = await cli(['verify', String(first.epoch)]);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stdout).toMatch(/no problems/);
    const full = lastEvent(await cli(['verify', 'latest', '--full', '--json']));
    expect(full).toMatchObject({ type: 'done', problems: 0, full: true });
    expect(full.records as number).toBeGreaterThanOrEqual(PER_QUEUE * QUEUES.length);

    const drill = await cli(['restore-drill', String(first.epoch), '--json'], 120_000);
    expect(drill.code, drill.stderr + drill.stdout).toBe(0);
    const events = jsonLines(drill.stdout);
    const queues = events.filter((e) => e.type === 'queue');
    expect(queues.map((q) => [q.queue, q.ok, q.restoredMessages])).toEqual(QUEUES.map((q) => [q.name, true, PER_QUEUE]));
    expect(events[events.length - 1]).toMatchObject({ type: 'done', ok: true, mismatches: 0, scratchRemoved: true });
    const vhosts = await new ManagementClient(services.managementUrl).listVhosts();
    expect(vhosts.filter((v) => v.startsWith('tidemark-drill-'))).toEqual([]);

    // Damage one segment of o-classic (same size, other bytes), then put it back.
    const entry = first.queues.find((q) => q.definition!.name === 'o-classic')!;
    const key = entry.segments[0].key;
    const path = join(fileURLToPath(cluster.storeUrl), key);
    const intact = readFileSync(path);
    const damaged = Buffer.from(intact);
    damaged[damaged.length >> 1] ^= 0xff;
    writeFileSync(path, damaged);
    try {
      const broken = await cli(['verify', String(first.epoch)]);
      expect(broken.code).toBe(3);
      expect(broken.stdout).toContain(key);
      expect(broken.stdout).toContain('o-classic');
      const brokenDrill = await cli(['restore-drill', String(first.epoch), '--json'], 120_000);
      expect(brokenDrill.code, brokenDrill.stderr).toBe(3);
      const results = jsonLines(brokenDrill.stdout).filter((e) => e.type === 'queue');
      expect(results.filter((q) => !q.ok).map((q) => q.queue), JSON.stringify(results.filter((q) => !q.ok))).toEqual(['o-classic']);
    } finally {
      writeFileSync(path, intact);
    }
  }, 240_000);

  it('a CLI killed mid-restore leaves the restore running; restore resume follows it to an exact end', async () => {
    const started = spawnCli(['restore', '--checkpoint', String(first.epoch), '--prefix', 'k.', ...SLOW, '--json'], cluster.env);
    const id = await restoreUnderWay(started.stdout);
    started.child.kill('SIGKILL');
    await started.result;
    const resumed = await cli(['restore', 'resume', id, '--json']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(lastEvent(resumed)).toMatchObject({ type: 'done', restoreId: id, failedQueues: 0, state: 'done' });
    // It never stopped: exact, no duplicates at all.
    await new RestoredQueues(services.amqpUrl, vhost).expectExactPrefixes(first, 'k.');
    const listed = JSON.parse((await cli(['restore', 'list', '--json'])).stdout) as { restores: Array<Record<string, unknown>> };
    expect(listed.restores.find((r) => r.restoreId === id)).toMatchObject({ state: 'done', queues: QUEUES.length, doneQueues: QUEUES.length });
  });

  it('Ctrl-C cancels a restore (exit 130, resumable); restore resume finishes it with at most a window of duplicates', async () => {
    const started = spawnCli(['restore', '--checkpoint', String(first.epoch), '--prefix', 'i.', ...SLOW, '--json'], cluster.env);
    const id = await restoreUnderWay(started.stdout);
    started.child.kill('SIGINT');
    const interrupted = await started.result;
    expect(interrupted.code).toBe(130);
    expect(interrupted.stderr).toContain(`restore ${id} cancelled`);
    expect(interrupted.stderr).toContain(`tidemark restore resume ${id}`);
    const listed = JSON.parse((await cli(['restore', 'list', '--json'])).stdout) as { restores: Array<Record<string, unknown>> };
    expect(listed.restores.find((r) => r.restoreId === id)).toMatchObject({ state: 'cancelled' });

    const resumed = await cli(['restore', 'resume', id, '--json']);
    expect(resumed.code, resumed.stderr).toBe(0);
    const plan = jsonLines(resumed.stdout)[0];
    expect(plan).toMatchObject({ type: 'plan', restoreId: id, resumed: true });
    expect((plan.queues as Array<{ alreadyConfirmed: number }>).some((q) => q.alreadyConfirmed > 0)).toBe(true);
    expect(lastEvent(resumed)).toMatchObject({ type: 'done', failedQueues: 0, state: 'done', messages: PER_QUEUE * QUEUES.length });
    await new RestoredQueues(services.amqpUrl, vhost).expectResumedPrefixes(first, 'i.', WINDOW);
  });

  it('a worker killed mid-restore: its queues resume on the other worker, exact for streams, in-window duplicates for queues', async () => {
    await cluster.kill('worker-1');
    cluster.restart('worker-1', { TIDEMARK_FAILPOINTS: 'worker.mid-restore=crash' });
    await cluster.waitForStatus((s) => bothWorkers(s) && s.workers.every((w) => w.error === ''), 'worker-1 back, armed');
    // Restore tasks follow rendezvous hashing of the target names: pick a prefix that gives
    // worker-1 a queue target and the stream.
    let prefix = '';
    for (let i = 0; i < 50 && !prefix; i += 1) {
      const plan = jsonLines((await cli(['restore', '--checkpoint', String(first.epoch), '--prefix', `w${i}.`, '--dry-run', '--json'])).stdout)[0];
      const onOne = (plan.queues as Array<{ worker: string; type: string }>).filter((q) => q.worker === 'worker-1').map((q) => q.type);
      if (onOne.includes('stream') && onOne.some((t) => t !== 'stream')) prefix = `w${i}.`;
    }
    expect(prefix, 'a prefix that sends a queue and the stream to worker-1').not.toBe('');
    const result = await cli(['restore', '--checkpoint', String(first.epoch), '--prefix', prefix, '--json'], 120_000);
    expect(result.code, result.stderr).toBe(0);
    expect(cluster.running('worker-1'), 'worker-1 crashed half-way through a queue').toBe(false);
    expect(lastEvent(result)).toMatchObject({ type: 'done', failedQueues: 0, state: 'done', messages: PER_QUEUE * QUEUES.length });
    await new RestoredQueues(services.amqpUrl, vhost).expectResumedPrefixes(first, prefix, WINDOW);
    cluster.restart('worker-1', {});
    await cluster.waitForStatus(bothWorkers, 'worker-1 back without failpoints');
  }, 180_000);

  it('the leader killed mid-restore: the next leader resumes it on its own, and restore resume follows it', async () => {
    const events: RestoreEvent[] = [];
    let id = '';
    const watching = (async () => {
      try {
        for await (const event of cluster.client.restore({ checkpoint: String(first.epoch), prefix: 'l.', rateLimit: 600 })) {
          events.push(event);
          if (event.event?.$case === 'plan') id = event.event.value.restoreId;
        }
      } catch {
        // The leader dies under this stream.
      }
    })();
    const deadline = Date.now() + 30_000;
    while (!events.some((e) => e.event?.$case === 'progress' && e.event.value.confirmed > 100) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(id).not.toBe('');
    await cluster.kill('coordinator');
    await watching;
    // The next leader (here the same coordinator, restarted) takes the lease once the dead one's
    // runs out, and resumes the restore by itself.
    cluster.restart('coordinator');
    const standby = new TidemarkClient(cluster.address, { tls: cluster.clientTls, token: cluster.token });
    try {
      let done: Record<string, unknown> | undefined;
      const until = Date.now() + 60_000;
      while (!done && Date.now() < until) {
        try {
          for await (const event of standby.resumeRestore(id)) {
            if (event.event?.$case === 'done') done = { ...event.event.value };
          }
        } catch {
          await new Promise((r) => setTimeout(r, 500));
        }
      }
      expect(done).toMatchObject({ restoreId: id, failedQueues: 0, state: 'done', messages: PER_QUEUE * QUEUES.length });
    } finally {
      standby.close();
    }
    await new RestoredQueues(services.amqpUrl, vhost).expectResumedPrefixes(first, 'l.', WINDOW);
  }, 120_000);

  it('the leader killed under a following restore command: the CLI reconnects to the next leader and follows the restore to its end', async () => {
    const started = spawnCli(['restore', '--checkpoint', String(first.epoch), '--prefix', 'f.', ...SLOW, '--json'], cluster.env);
    const id = await restoreUnderWay(started.stdout);
    await cluster.kill('coordinator');
    cluster.restart('coordinator');
    const followed = await started.result;
    expect(followed.code, followed.stderr).toBe(0);
    expect(followed.stderr).toContain(`tidemark: lost the coordinator (`);
    expect(followed.stderr).toContain(`; reconnecting to follow restore ${id}`);
    expect(lastEvent(followed)).toMatchObject({ type: 'done', restoreId: id, failedQueues: 0, state: 'done' });
    await new RestoredQueues(services.amqpUrl, vhost).expectResumedPrefixes(first, 'f.', WINDOW);
  }, 120_000);
});
