/**
 * G1: a checkpoint is visible only when every protected queue's part is durable. Rounds in which
 * a worker is down or votes NO must leave nothing visible — no listed checkpoint and no manifest
 * object — while a restarted worker resumes capture so the next checkpoint is exact again.
 *
 * These are strict rounds (TIDEMARK_STRICT_ROUNDS=true): all or nothing. By default such a round
 * commits the other queues and carries the failed ones (G8): test/integration/partial-rounds.test.ts.
 */
import amqp from 'amqplib';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import { checkpointKey } from '../../services/core/store/keys.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { RoundRobinProducer } from '../helpers/producers.js';
import { RestoredQueues, restoreWithPrefix } from '../helpers/verify.js';
import { declareBoundQueues } from '../helpers/broker.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';

const QUEUES = [
  { name: 'a1', type: 'classic' },
  { name: 'a2', type: 'quorum' },
  { name: 'a3', type: 'stream' },
  { name: 'a4', type: 'classic' },
  { name: 'a5', type: 'quorum' },
  { name: 'a6', type: 'stream' },
];

let services: TestServices;
let vhost: string;
let namespace: string;
let cluster: TestCluster;

function manifestExists(epoch: number): boolean {
  return existsSync(join(fileURLToPath(cluster.storeUrl), checkpointKey(epoch)));
}

async function publish(count: number): Promise<void> {
  const producer = new RoundRobinProducer(services.amqpUrl, vhost, 'work', QUEUES.map((q) => q.name), { maxMessages: count, window: 16 });
  producer.start();
  await producer.finished();
  expect(producer.total()).toBe(count);
}

const allAssigned = (workers: number) => (s: { workers: Array<{ queues: number }>; protectedQueues: number }) =>
  s.protectedQueues === QUEUES.length && s.workers.length === workers && s.workers.reduce((n, w) => n + w.queues, 0) === QUEUES.length;

describe('atomic checkpoints (G1)', () => {
  beforeAll(async () => {
    services = await testServices();
    vhost = uniqueName('tm-atomic');
    namespace = uniqueName('tma');
    await createTestVhost(services.managementUrl, vhost);
    await declareBoundQueues(services.amqpUrl, vhost, 'work', QUEUES);
    cluster = await startTestCluster({
      services,
      namespace,
      protect: `${vhost}:a*`,
      store: { kind: 'file' },
      workers: 3,
      prepareTimeout: '5s',
      extraEnv: { TIDEMARK_LEASE_TIME: '3s', TIDEMARK_DISCOVERY_INTERVAL: '1s', TIDEMARK_STRICT_ROUNDS: 'true' },
    });
    await cluster.waitForStatus(allAssigned(3), 'six queues assigned to three workers');
  });

  afterAll(async () => {
    await cluster?.stop();
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
  });

  it('leaves no visible checkpoint when a worker is down, and resumes exactly after its restart', async () => {
    await publish(120);
    const first = await cluster.client.checkpoint(true);
    expect(first.outcome).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);

    await publish(60);
    const status = await cluster.client.status();
    const victim = status.workers.find((w) => w.queues > 0)!.workerId;
    const oldAddress = status.workers.find((w) => w.workerId === victim)!.address;
    await cluster.kill(victim);
    const failed = await cluster.client.checkpoint(true);
    expect(failed.outcome).toBe(RoundOutcome.ROUND_OUTCOME_ABORTED);
    expect(failed.reason).toContain(victim);
    expect(manifestExists(failed.epoch)).toBe(false);
    expect((await cluster.client.listCheckpoints()).map((c) => c.epoch)).toEqual([first.epoch]);
    await expect(cluster.client.getCheckpoint(String(failed.epoch))).rejects.toThrow(/does not exist/);

    // The restarted worker resumes from the last checkpoint's cut: the next checkpoint is exact.
    cluster.restart(victim);
    await cluster.waitForStatus(
      (s) => allAssigned(3)(s) && s.workers.some((w) => w.workerId === victim && w.address !== oldAddress && w.queues > 0),
      `${victim} back with its queues`,
    );
    await publish(60);
    const next = await cluster.client.checkpoint(true);
    expect(next.reason).toBe('');
    expect(next.outcome).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    const manifest = await cluster.client.getCheckpoint(String(next.epoch));
    expect(manifest.messages).toBe(240);
    await restoreWithPrefix(cluster.client, manifest, 'r.');
    await new RestoredQueues(services.amqpUrl, vhost).expectExactPrefixes(manifest, 'r.');
  });

  it('aborts a round whose prepare deadline passes (a stalled worker), leaving nothing visible', async () => {
    const before = (await cluster.client.listCheckpoints()).map((c) => c.epoch);
    const status = await cluster.client.status();
    const stalled = status.workers.find((w) => w.queues > 0)!.workerId;
    cluster.pause(stalled);
    try {
      const round = await cluster.client.checkpoint(true);
      expect(round.outcome).toBe(RoundOutcome.ROUND_OUTCOME_ABORTED);
      expect(round.reason).toMatch(/deadline|did not vote/i);
      expect(round.durationMs).toBeGreaterThanOrEqual(4_500);
      expect(manifestExists(round.epoch)).toBe(false);
      expect((await cluster.client.listCheckpoints()).map((c) => c.epoch)).toEqual(before);
    } finally {
      cluster.resume(stalled);
    }
    // Once it answers again, rounds commit again.
    await cluster.waitForStatus(allAssigned(3), 'all workers answering');
    const next = await cluster.client.checkpoint(true);
    expect(next.reason).toBe('');
    expect(next.outcome).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
  }, 120_000);

  it('leaves no visible checkpoint when a worker votes NO', async () => {
    const before = (await cluster.client.listCheckpoints()).map((c) => c.epoch);
    // Replacing a journal stream (deleted and declared again behind Tidemark's back, without the
    // time Tidemark records when it declares one) makes its worker's capture fail: it must vote
    // NO. (A journal that is only deleted, Tidemark declares again itself and renews.)
    const journal = `${namespace}.journal.a3`;
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createChannel();
    await channel.deleteQueue(journal);
    await channel.assertQueue(journal, { durable: true, arguments: { 'x-queue-type': 'stream' } });
    await connection.close();
    await publish(30);
    const round = await cluster.client.checkpoint(true);
    expect(round.outcome).toBe(RoundOutcome.ROUND_OUTCOME_ABORTED);
    expect(round.reason).toMatch(/a3/);
    expect(manifestExists(round.epoch)).toBe(false);
    expect((await cluster.client.listCheckpoints()).map((c) => c.epoch)).toEqual(before);
    // The operator sees why in status: a worker's capture error, or the last round's reason. (A
    // replacement capture may attach meanwhile to the journal that discovery declares again, and
    // wait there for offsets the new journal does not have yet: then only the round says why.)
    const names = (s: { workers: { error: string }[]; lastRound?: { reason: string } }) => [...s.workers.map((w) => w.error), s.lastRound?.reason ?? ''].join(' ');
    const status = await cluster.waitForStatus((s) => names(s).includes(journal), `status naming ${journal}`, 15_000);
    expect(names(status)).toContain(journal);
  });
});
