/**
 * Retention and garbage collection against a real coordinator and worker, RabbitMQ, Redis and an
 * S3 server: `checkpoints prune` deletes what the policy drops and nothing a protection holds
 * (latest, a base of a kept checkpoint, the newest verified, a restore's), the sweep removes the
 * segments of a queue no kept checkpoint holds, every kept checkpoint still verifies and restores
 * exactly, `checkpoints delete` refuses protected checkpoints with the reason, and the leader
 * prunes by itself after commits when `pruneInterval` is set.
 */
import amqp from 'amqplib';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../services/core/infrastructure/config.js';
import { RestoreStateStore } from '../../services/core/state/restore-state.js';
import { openStore } from '../../services/core/store/open-store.js';
import { segmentPrefix } from '../../services/core/store/keys.js';
import type { ObjectStore } from '../../services/core/store/object-store.js';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import type { CheckpointManifest } from '../../services/gen/tidemark/v1/store.js';
import { runCli } from '../helpers/cli.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { eventually } from '../helpers/eventually.js';
import { RoundRobinProducer } from '../helpers/producers.js';
import { RestoredQueues, restoreWithPrefix } from '../helpers/verify.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';

const EXCHANGE = 'work';
const QUEUES = ['keep-a', 'keep-b', 'doomed'];
/** GC grace (at least twice the prepare timeout, 1.5 s). */
const GRACE_MS = 3_000;
/** Past the grace period and the DECIDE deadline (5 s): a checkpoint whose COMMIT a worker may still apply is kept until then. */
const SETTLE_MS = 5_500;

let services: TestServices;
let vhost: string;
let cluster: TestCluster;
let store: ObjectStore;
let redis: Redis;
let namespace: string;

async function publish(queues: string[], count: number): Promise<void> {
  const producer = new RoundRobinProducer(services.amqpUrl, vhost, EXCHANGE, queues, { maxMessages: count, window: 16 });
  producer.start();
  await producer.finished();
}

async function checkpoint(): Promise<number> {
  const reply = await cluster.client.checkpoint(true);
  expect(reply.reason).toBe('');
  expect(reply.outcome).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
  return reply.epoch;
}

const listed = async () => (await cluster.client.listCheckpoints()).map((c) => c.epoch);
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Verify (full) passes on every visible checkpoint: its chain and every segment exist and decode. */
async function expectAllVerify(): Promise<void> {
  for (const epoch of await listed()) {
    let problems = -1;
    const messages: string[] = [];
    try {
      for await (const event of cluster.client.verify(String(epoch), true)) {
        if (event.event?.$case === 'problem') messages.push(event.event.value.message);
        if (event.event?.$case === 'done') problems = event.event.value.problems;
      }
    } catch (err) {
      // Pruned by the leader meanwhile (automatic prune): no longer retained, nothing to verify.
      if ((err as Error).name === 'NotFoundError' && !(await listed()).includes(epoch)) continue;
      throw err;
    }
    if (problems !== 0 && !(await listed()).includes(epoch)) {
      console.log(`checkpoint ${epoch} was pruned while it was verified (${messages.length} problems): not retained, skipped`);
      continue;
    }
    expect(problems, `checkpoint ${epoch} verifies: ${messages.join('; ')}`).toBe(0);
  }
}

describe('retention and garbage collection (real coordinator, S3)', () => {
  beforeAll(async () => {
    services = await testServices();
    vhost = uniqueName('tm-ret');
    namespace = uniqueName('tmr');
    await createTestVhost(services.managementUrl, vhost);
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createChannel();
    await channel.assertExchange(EXCHANGE, 'direct', { durable: true });
    for (const q of QUEUES) {
      await channel.assertQueue(q, { durable: true });
      await channel.bindQueue(q, EXCHANGE, q);
    }
    await connection.close();
    cluster = await startTestCluster({
      services,
      namespace,
      protect: `${vhost}:*`,
      store: { kind: 's3', bucket: uniqueName('tm-ret') },
      workers: 1,
      prepareTimeout: '1500ms',
      extraEnv: {
        TIDEMARK_DISCOVERY_INTERVAL: '1s',
        TIDEMARK_RETAIN_LAST: '2',
        TIDEMARK_RETAIN_WITHIN: '0',
        TIDEMARK_RETAIN_DAILY: '0',
        TIDEMARK_RETAIN_WEEKLY: '0',
        TIDEMARK_RETAIN_MONTHLY: '0',
        TIDEMARK_RETAIN_HISTORY: '0',
        TIDEMARK_GC_GRACE: `${GRACE_MS}ms`,
        TIDEMARK_FULL_EVERY: '3',
        TIDEMARK_PRUNE_INTERVAL: '0',
      },
    });
    await cluster.waitForStatus((s) => s.leader && s.protectedQueues === QUEUES.length && s.workers.some((w) => w.queues === QUEUES.length), 'three protected queues on the worker');
    store = await openStore(loadConfig({ env: cluster.env }));
    redis = new Redis(services.redisUrl);
  }, 120_000);

  afterAll(async () => {
    redis?.disconnect();
    await store?.close();
    await cluster?.stop();
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
  });

  it('prune deletes what the policy drops, keeps bases and protected checkpoints, sweeps a deleted queue, and every kept checkpoint verifies and restores', async () => {
    for (let i = 0; i < 4; i += 1) {
      await publish(QUEUES, 30);
      await checkpoint();
    }
    // The doomed queue goes away with its journal; later checkpoints no longer hold it.
    const journal = (await cluster.client.getCheckpoint('latest')).queues.find((q) => q.definition!.name === 'doomed')!.journal;
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createChannel();
    await channel.deleteQueue('doomed');
    await channel.deleteQueue(journal);
    await connection.close();
    await publish(['keep-a', 'keep-b'], 20);
    await eventually('a checkpoint without the deleted queue', async () => {
      const m = await cluster.client.getCheckpoint(String(await checkpoint()));
      return m.queues.some((q) => q.definition!.name === 'doomed') ? undefined : true;
    }, { timeoutMs: 30_000 });
    const doomedSegments = () => store.list(segmentPrefix(vhost, 'doomed'));
    expect((await doomedSegments()).length).toBeGreaterThan(0);

    // A resumable restore of checkpoint 2 (its record in Redis) holds it.
    const restores = new RestoreStateStore(redis, namespace);
    await restores.create({ id: 'held', checkpoint: 2, request: {}, state: 'interrupted', createdAtMs: Date.now(), updatedAtMs: Date.now(), queues: 3, messages: 0 });

    // Everything is older than the grace period, then one more checkpoint (the sweep runs only
    // while checkpoints are being committed).
    await pause(SETTLE_MS);
    await publish(['keep-a', 'keep-b'], 20);
    const newest = await checkpoint();
    const before = await listed();

    const dry = await runCli(['checkpoints', 'prune', '--dry-run', '--json'], cluster.env);
    expect(dry.stderr).toBe('');
    expect(dry.code).toBe(0);
    const dryReport = JSON.parse(dry.stdout) as { dryRun: boolean; deleted: number[]; kept: Array<{ epoch: number; reasons: string[] }>; segmentsDeleted: number; sweepSkipped: string | null };
    expect(dryReport.dryRun).toBe(true);
    expect(await listed(), 'a dry run deletes nothing').toEqual(before);

    const report = await cluster.client.pruneCheckpoints(false);
    const after = await listed();
    expect(report.deleted.length).toBeGreaterThan(0);
    expect(report.deleted).toEqual(dryReport.deleted);
    expect(after).toEqual(report.kept.map((k) => k.epoch));
    expect(after).toEqual(before.filter((e) => !report.deleted.includes(e)));
    const reasons = new Map(report.kept.map((k) => [k.epoch, k.reasons.join(', ')]));
    expect(reasons.get(newest)).toMatch(/latest/);
    expect(reasons.get(2)).toMatch(/restore held/);
    // Every kept incremental's base is kept.
    for (const epoch of after) {
      const m = await cluster.client.getCheckpoint(String(epoch));
      for (const q of m.queues) if (q.baseEpoch !== 0) expect(after, `base ${q.baseEpoch} of ${epoch}`).toContain(q.baseEpoch);
    }

    // The deleted queue is held by a kept checkpoint (2, the restore's) until that goes too, and by
    // whatever the kept ones build on: a chain back to a full manifest, or (G8) the checkpoint a
    // round carried it from while its capture failed. How many rounds that takes depends on how
    // rounds fell, so rounds and prunes repeat until no kept checkpoint holds it.
    await restores.setState('held', 'done');
    const holders = async () => {
      const held: number[] = [];
      for (const epoch of await listed()) if ((await cluster.client.getCheckpoint(String(epoch))).queues.some((q) => q.definition!.name === 'doomed')) held.push(epoch);
      return held;
    };
    let swept = 0;
    let last: Awaited<ReturnType<typeof cluster.client.pruneCheckpoints>> | undefined;
    for (let attempt = 0; attempt < 6 && (attempt === 0 || (await holders()).length > 0); attempt += 1) {
      // Checkpoints within the grace period are kept, and their chains with them.
      if (attempt > 0) await pause(SETTLE_MS);
      await publish(['keep-a', 'keep-b'], 5);
      await checkpoint();
      last = await cluster.client.pruneCheckpoints(false);
      expect(last.sweepSkipped).toBe('');
      swept += last.segmentsDeleted;
    }
    expect(await holders(), `no kept checkpoint holds the deleted queue (${JSON.stringify(last?.kept)})`).toEqual([]);
    // The sweep may need one more pass: it runs after the manifests that held the queue went.
    if ((await doomedSegments()).length > 0) swept += (await cluster.client.pruneCheckpoints(false)).segmentsDeleted;
    expect(await doomedSegments(), `the deleted queue's segments are swept (${JSON.stringify(last)})`).toEqual([]);
    expect(swept).toBeGreaterThan(0);

    // Every segment left is listed by a kept checkpoint (nothing else was captured meanwhile).
    const referenced = new Set<string>();
    for (const epoch of await listed()) for (const q of (await cluster.client.getCheckpoint(String(epoch))).queues) for (const s of q.segments) referenced.add(s.key);
    for (const key of await store.list('segments/')) expect(referenced.has(key), `${key} is referenced`).toBe(true);

    await expectAllVerify();
    const latest: CheckpointManifest = await cluster.client.getCheckpoint('latest');
    await restoreWithPrefix(cluster.client, latest, 'ret.');
    await new RestoredQueues(services.amqpUrl, vhost).expectExactPrefixes(latest, 'ret.');
  }, 240_000);

  it('delete refuses the latest, a base, the newest verified checkpoint, and one within the grace period, and deletes an unprotected one', async () => {
    for (let i = 0; i < 5; i += 1) {
      await publish(['keep-a', 'keep-b'], 10);
      await checkpoint();
    }
    const refused = async (epoch: number, reason: RegExp) => {
      const r = await runCli(['checkpoints', 'delete', String(epoch)], cluster.env);
      expect(r.code, r.stderr).not.toBe(0);
      expect(r.stderr).toMatch(new RegExp(`checkpoint ${epoch} was not deleted`));
      expect(r.stderr).toMatch(reason);
      expect(await listed()).toContain(epoch);
    };
    const epochs = await listed();
    const newest = epochs[epochs.length - 1];
    await refused(newest, /latest checkpoint/);
    await refused(epochs[epochs.length - 2], /grace period/);

    await pause(SETTLE_MS);
    const manifests = await Promise.all((await listed()).map((e) => cluster.client.getCheckpoint(String(e))));
    const bases = new Set(manifests.flatMap((m) => m.queues.map((q) => q.baseEpoch)).filter((b) => b !== 0));
    const base = [...bases][0];
    expect(base, 'some checkpoint is incremental').toBeDefined();
    await refused(base, /read through it \(base_epoch\)/);

    // Newest first: the marker only moves forward, so the verified one must be newer than any before.
    const free = manifests.map((m) => m.epoch).filter((e) => e !== newest && !bases.has(e)).reverse();
    expect(free.length).toBeGreaterThan(1);
    for await (const event of cluster.client.verify(String(free[0]), false)) void event;
    await refused(free[0], /newest verified checkpoint/);

    const ok = await runCli(['checkpoints', 'delete', String(free[1]), '--json'], cluster.env);
    expect(ok.stderr).toBe('');
    expect(JSON.parse(ok.stdout)).toEqual({ deleted: free[1] });
    expect(await listed()).not.toContain(free[1]);
    const missing = await runCli(['checkpoints', 'delete', String(free[1])], cluster.env);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/does not exist/);
    await expectAllVerify();
  }, 120_000);

  it('the leader prunes by itself after a commit once pruneInterval is set', async () => {
    await cluster.kill('coordinator');
    cluster.restart('coordinator', { TIDEMARK_PRUNE_INTERVAL: '1s' });
    await cluster.waitForStatus((s) => s.leader && s.workers.length === 1, 'the coordinator back, leading');
    const old = await listed();
    for (let i = 0; i < 3; i += 1) {
      await publish(['keep-a', 'keep-b'], 10);
      await checkpoint();
    }
    await pause(SETTLE_MS);
    await checkpoint();
    await pause(1_100);
    await checkpoint();
    await eventually(
      'old checkpoints pruned without a request',
      async () => {
        const now = await listed();
        return old.some((e) => !now.includes(e)) ? true : undefined;
      },
      { timeoutMs: 15_000 },
    );
    await expectAllVerify();
  }, 120_000);
});
