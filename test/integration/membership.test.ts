/**
 * Membership under traffic: a worker that dies hands only its own queues to the others, and one
 * that joins takes only its rendezvous share; checkpoints across each handoff restore exactly and
 * hold every confirmed message.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkerClient } from '../../services/core/grpc/worker-client.js';
import { RoundOutcome, type StatusReply } from '../../services/gen/tidemark/v1/admin.js';
import type { CheckpointManifest } from '../../services/gen/tidemark/v1/store.js';
import { declareBoundQueues } from '../helpers/broker.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { RoundRobinProducer } from '../helpers/producers.js';
import { createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';
import { RestoredQueues, restoreWithPrefix } from '../helpers/verify.js';

const TYPES = ['classic', 'quorum', 'stream'] as const;
const QUEUES = Array.from({ length: 36 }, (_, i) => ({ name: `m${String(i).padStart(2, '0')}`, type: TYPES[i % 3] }));

let services: TestServices;
let vhost: string;
let cluster: TestCluster;

const assignedTo = (workers: string[]) => (s: StatusReply) =>
  s.protectedQueues === QUEUES.length &&
  s.workers.length === workers.length &&
  // Each listed worker has been given its share (a worker that registered after the last pass has none yet).
  workers.every((id) => s.workers.some((w) => w.workerId === id && w.reachable && w.queues > 0)) &&
  s.workers.reduce((n, w) => n + w.queues, 0) === QUEUES.length;

/** Which worker captures each queue, asked of the workers themselves. */
async function owners(): Promise<Map<string, string>> {
  const status = await cluster.client.status();
  const byQueue = new Map<string, string>();
  for (const w of status.workers) {
    const client = new WorkerClient(w.address, { workerId: w.workerId, tls: cluster.workerTls });
    try {
      for (const q of (await client.status(5_000)).queues) {
        expect(byQueue.has(q.queue), `${q.queue} captured by two workers`).toBe(false);
        byQueue.set(q.queue, w.workerId);
      }
    } finally {
      client.close();
    }
  }
  return byQueue;
}

/**
 * A checkpoint right after a handoff may abort (a round overlapping it either includes the queue
 * correctly or aborts); it must never be visible then. It may also commit with a handed-over queue
 * outside its cut (G8: its new worker was not ready), carried from its last good cut. Retries until
 * one commits with every queue inside its cut.
 */
async function committedCheckpoint(): Promise<CheckpointManifest> {
  for (let attempt = 1; attempt <= 5; attempt += 1) {
    const round = await cluster.client.checkpoint(true);
    if (round.outcome === RoundOutcome.ROUND_OUTCOME_COMMITTED) {
      const manifest = await cluster.client.getCheckpoint(String(round.epoch));
      if (manifest.queues.every((q) => !q.outsideCut)) return manifest;
      await new Promise((r) => setTimeout(r, 1_000));
      continue;
    }
    expect((await cluster.client.listCheckpoints()).map((c) => c.epoch)).not.toContain(round.epoch);
    await new Promise((r) => setTimeout(r, 1_000));
  }
  throw new Error('no checkpoint committed with every queue inside its cut in 5 rounds');
}

describe('workers leaving and joining under traffic', () => {
  beforeAll(async () => {
    services = await testServices();
    vhost = uniqueName('tm-members');
    await createTestVhost(services.managementUrl, vhost);
    await declareBoundQueues(services.amqpUrl, vhost, 'members', QUEUES);
    cluster = await startTestCluster({
      services,
      namespace: uniqueName('tmm'),
      protect: `${vhost}:m*`,
      store: { kind: 'file' },
      workers: 3,
      extraEnv: { TIDEMARK_LEASE_TIME: '2s', TIDEMARK_DISCOVERY_INTERVAL: '1s' },
    });
    await cluster.waitForStatus(assignedTo(['worker-1', 'worker-2', 'worker-3']), '36 queues over three workers');
  }, 120_000);

  afterAll(async () => {
    await cluster?.stop();
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
  });

  it('a worker killed mid-traffic hands only its own queues over; the next checkpoint restores exactly', async () => {
    const producer = new RoundRobinProducer(services.amqpUrl, vhost, 'members', QUEUES.map((q) => q.name), { window: 16, pauseMs: 50 });
    producer.start();
    try {
      await new Promise((r) => setTimeout(r, 500));
      await committedCheckpoint();
      const before = await owners();
      await cluster.kill('worker-3');
      await cluster.waitForStatus(assignedTo(['worker-1', 'worker-2']), "worker-3's queues moved to the others");
      const after = await owners();
      const moved = [...before].filter(([, w]) => w === 'worker-3').map(([q]) => q);
      expect(moved.length).toBeGreaterThan(0);
      for (const [queue, worker] of before) {
        if (worker === 'worker-3') expect(['worker-1', 'worker-2']).toContain(after.get(queue));
        else expect(after.get(queue), `${queue} stays with ${worker}`).toBe(worker);
      }
      await new Promise((r) => setTimeout(r, 500));
      const handedOver = await committedCheckpoint();
      await restoreWithPrefix(cluster.client, handedOver, 'k.');
      await new RestoredQueues(services.amqpUrl, vhost).expectExactPrefixes(handedOver, 'k.');
    } finally {
      await producer.stop();
    }
    cluster.restart('worker-3');
    await cluster.waitForStatus(assignedTo(['worker-1', 'worker-2', 'worker-3']), 'worker-3 back with its share');
  }, 180_000);

  it('a fourth worker takes about a quarter of the queues, only from the others, and loses nothing', async () => {
    const producer = new RoundRobinProducer(services.amqpUrl, vhost, 'members', QUEUES.map((q) => q.name), { window: 16, pauseMs: 50 });
    producer.start();
    let final: CheckpointManifest;
    try {
      await new Promise((r) => setTimeout(r, 500));
      const before = await owners();
      cluster.restart('worker-4');
      await cluster.waitForStatus(assignedTo(['worker-1', 'worker-2', 'worker-3', 'worker-4']), 'worker-4 with its share');
      const after = await owners();
      const moved = [...after].filter(([queue, worker]) => before.get(queue) !== worker);
      // Rendezvous hashing: every queue that moved went to the new worker, about a quarter of them.
      for (const [queue, worker] of moved) expect(worker, `${queue} moved between old workers`).toBe('worker-4');
      expect(moved.length).toBeGreaterThanOrEqual(3);
      expect(moved.length).toBeLessThanOrEqual(18);
      await new Promise((r) => setTimeout(r, 500));
      await committedCheckpoint();
    } finally {
      await producer.stop();
    }
    final = await committedCheckpoint();
    await restoreWithPrefix(cluster.client, final, 'j.');
    const restored = new RestoredQueues(services.amqpUrl, vhost);
    await restored.expectExactPrefixes(final, 'j.');
    // Nothing lost across the handoffs: every confirmed message, in order.
    for (const [queue, confirmed] of producer.confirmed) {
      const got = (await restored.read(final, 'j.', queue)).map((m) => m.properties.messageId);
      expect(got.slice(-confirmed.length), `${queue} confirmed messages`).toEqual(confirmed.map((c) => c.messageId));
    }
    expect(producer.total()).toBeGreaterThan(100);
  }, 180_000);
});
