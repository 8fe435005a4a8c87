/**
 * G5 (self-describing store) and G6 (non-disruptive capture) against a real cluster on S3.
 *
 * G6: the protected queues' own consumers get every message once, in order, never redelivered,
 * and the broker shows no consumer on them but the application's while Tidemark captures.
 * G5: with every Redis key of the installation gone and the coordinator restarted, the catalog is
 * whole, epochs and leader tokens move on above the old ones, and the checkpoints restore.
 */
import amqp, { type ChannelModel } from 'amqplib';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { RoundRobinProducer } from '../helpers/producers.js';
import { RestoredQueues, restoreWithPrefix } from '../helpers/verify.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';

const QUEUES = [
  { name: 'g-classic', type: 'classic' },
  { name: 'g-quorum', type: 'quorum' },
];

let services: TestServices;
let vhost: string;
let namespace: string;
let cluster: TestCluster;
let appConnection: ChannelModel;
const received = new Map<string, Array<{ messageId: string; redelivered: boolean }>>();

/** Consumers the broker counts on a queue, from its own declare-ok (no stats delay). */
async function consumersOf(queue: string): Promise<number> {
  const channel = await appConnection.createChannel();
  try {
    return (await channel.checkQueue(queue)).consumerCount;
  } finally {
    await channel.close();
  }
}

describe('guarantees G5 and G6', () => {
  beforeAll(async () => {
    services = await testServices();
    vhost = uniqueName('tm-guarantees');
    namespace = uniqueName('tmg');
    await createTestVhost(services.managementUrl, vhost);
    appConnection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await appConnection.createChannel();
    await channel.assertExchange('app', 'direct', { durable: true });
    await channel.prefetch(20);
    for (const q of QUEUES) {
      await channel.assertQueue(q.name, { durable: true, arguments: { 'x-queue-type': q.type } });
      await channel.bindQueue(q.name, 'app', q.name);
      received.set(q.name, []);
      // The application's own consumer, working while Tidemark captures.
      await channel.consume(q.name, (msg) => {
        if (!msg) return;
        received.get(q.name)!.push({ messageId: String(msg.properties.messageId), redelivered: msg.fields.redelivered });
        channel.ack(msg);
      });
    }
    cluster = await startTestCluster({
      services,
      namespace,
      protect: `${vhost}:g-*`,
      store: { kind: 's3', bucket: uniqueName('tm-guarantees') },
      workers: 2,
      extraEnv: { TIDEMARK_LEASE_TIME: '2s', TIDEMARK_DISCOVERY_INTERVAL: '1s' },
    });
    await cluster.waitForStatus((s) => s.protectedQueues === QUEUES.length && s.workers.reduce((n, w) => n + w.queues, 0) === QUEUES.length, 'queues assigned');
  });

  afterAll(async () => {
    await cluster?.stop();
    await appConnection?.close().catch(() => {});
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
  });

  it('G6: capture never consumes from or requeues the protected queues, whose consumers get every message once and in order', async () => {
    const producer = new RoundRobinProducer(services.amqpUrl, vhost, 'app', QUEUES.map((q) => q.name), { maxMessages: 600, window: 20 });
    producer.start();
    const consumerCounts: number[] = [];
    for (let i = 0; i < 2; i += 1) {
      expect((await cluster.client.checkpoint(true)).outcome).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
      for (const q of QUEUES) {
        consumerCounts.push(await consumersOf(q.name));
      }
    }
    await producer.finished();
    const until = Date.now() + 20_000;
    while (Date.now() < until && [...received.values()].reduce((n, r) => n + r.length, 0) < producer.total()) await new Promise((r) => setTimeout(r, 100));
    expect(consumerCounts.every((n) => n === 1), `consumers on the source queues: ${consumerCounts}`).toBe(true);
    for (const q of QUEUES) {
      const got = received.get(q.name)!;
      expect(got.map((m) => m.messageId), `${q.name}: what the application consumed`).toEqual(producer.confirmed.get(q.name)!.map((c) => c.messageId));
      expect(got.filter((m) => m.redelivered)).toEqual([]);
    }
  });

  it('G5: losing Redis loses no checkpoint; epochs and leader tokens keep rising', async () => {
    const before = await cluster.client.listCheckpoints();
    expect(before.length).toBeGreaterThanOrEqual(2);
    const newest = await cluster.client.getCheckpoint('latest');

    await cluster.kill('coordinator');
    const redis = new Redis(services.redisUrl);
    try {
      const keys = await redis.keys(`${namespace}:*`);
      expect(keys.length).toBeGreaterThan(0);
      await redis.del(...keys);
    } finally {
      redis.disconnect();
    }
    cluster.restart('coordinator');
    await cluster.waitForStatus((s) => s.leader && s.workers.reduce((n, w) => n + w.queues, 0) === QUEUES.length, 'a new leader on an empty Redis');

    expect(await cluster.client.listCheckpoints()).toEqual(before);
    const next = await cluster.client.checkpoint(true);
    expect(next.reason).toBe('');
    expect(next.epoch).toBeGreaterThan(newest.epoch);
    const manifest = await cluster.client.getCheckpoint(String(next.epoch));
    expect(manifest.leaderToken).toBeGreaterThan(newest.leaderToken);

    await restoreWithPrefix(cluster.client, newest, 'g5.');
    await new RestoredQueues(services.amqpUrl, vhost).expectExactPrefixes(newest, 'g5.');
  });
});
