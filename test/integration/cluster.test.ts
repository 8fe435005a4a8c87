/**
 * The whole product against real RabbitMQ, Redis and S3: a coordinator and three workers as
 * separate processes protect 20 queues of mixed types under continuous publishing; checkpoints
 * are restored into prefixed queues and compared with the journals and the producers' confirms.
 */
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import type { CheckpointManifest } from '../../services/gen/tidemark/v1/store.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { RestoredQueues, restoreWithPrefix } from '../helpers/verify.js';
import { CausalProducer, RoundRobinProducer } from '../helpers/producers.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';

const TYPES = ['classic', 'quorum', 'stream'] as const;
const QUEUES = Array.from({ length: 20 }, (_, i) => ({ name: `q${String(i).padStart(2, '0')}`, type: TYPES[i % 3] }));
const CAUSAL_A = 'q18';
const CAUSAL_B = 'q19';
const EXCHANGE = 'events';

let services: TestServices;
let vhost: string;
let cluster: TestCluster;
let restored: RestoredQueues;

async function declareTopology(): Promise<void> {
  const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
  const channel = await connection.createChannel();
  await channel.assertExchange(EXCHANGE, 'direct', { durable: true });
  await channel.assertExchange('broadcast', 'fanout', { durable: true });
  for (const q of QUEUES) {
    await channel.assertQueue(q.name, { durable: true, arguments: { 'x-queue-type': q.type } });
    await channel.bindQueue(q.name, EXCHANGE, q.name);
  }
  await channel.bindQueue('q00', 'broadcast', '');
  await connection.close();
}

async function checkpoint(): Promise<CheckpointManifest> {
  const reply = await cluster.client.checkpoint(true);
  expect(reply.reason).toBe('');
  expect(reply.outcome).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
  return cluster.client.getCheckpoint(String(reply.epoch));
}

describe('a three-worker cluster on RabbitMQ, Redis and S3', () => {
  beforeAll(async () => {
    services = await testServices();
    vhost = uniqueName('tm-cluster');
    await createTestVhost(services.managementUrl, vhost);
    restored = new RestoredQueues(services.amqpUrl, vhost);
    await declareTopology();
    cluster = await startTestCluster({
      services,
      namespace: uniqueName('tmc'),
      protect: `${vhost}:q*`,
      store: { kind: 's3', bucket: uniqueName('tm-cluster') },
      workers: 3,
    });
    await cluster.waitForStatus(
      (s) => s.protectedQueues === QUEUES.length && s.workers.length === 3 && s.workers.reduce((n, w) => n + w.queues, 0) === QUEUES.length,
      '20 protected queues spread over 3 workers',
    );
  });

  afterAll(async () => {
    await cluster?.stop();
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
  });

  it('restores checkpoints taken under traffic as exact journal prefixes, causally consistent, losing no confirmed message', async () => {
    const producer = new RoundRobinProducer(services.amqpUrl, vhost, EXCHANGE, QUEUES.slice(0, 18).map((q) => q.name));
    const causal = new CausalProducer(services.amqpUrl, vhost, EXCHANGE, CAUSAL_A, CAUSAL_B);
    producer.start();
    causal.start();
    const underTraffic: CheckpointManifest[] = [];
    for (let i = 0; i < 3; i += 1) {
      await new Promise((r) => setTimeout(r, 700));
      underTraffic.push(await checkpoint());
    }
    await producer.stop();
    await causal.stop();
    const final = await checkpoint();

    // Every checkpoint covers all 20 queues and each is one cut: incremental ones chain to the last.
    for (const m of [...underTraffic, final]) expect(m.queues.map((q) => q.definition!.name).sort()).toEqual(QUEUES.map((q) => q.name));
    expect(underTraffic[1].messages).toBeGreaterThan(0);
    expect(underTraffic[2].messages).toBeGreaterThan(underTraffic[0].messages);

    await restoreWithPrefix(cluster.client, underTraffic[1], 'mid.');
    await restored.expectExactPrefixes(underTraffic[1], 'mid.');
    await restored.expectCausal(underTraffic[1], 'mid.', CAUSAL_A, CAUSAL_B);

    await restoreWithPrefix(cluster.client, final, 'fin.');
    await restored.expectExactPrefixes(final, 'fin.');
    await restored.expectCausal(final, 'fin.', CAUSAL_A, CAUSAL_B);

    // G4: after publishing stopped, the checkpoint holds every confirmed message, in order.
    for (const [queue, confirmed] of producer.confirmed) {
      const messages = await restored.read(final, 'fin.', queue);
      expect(messages.map((m) => m.properties.messageId), `${queue} confirmed messages`).toEqual(confirmed.map((c) => c.messageId));
    }
    expect(producer.total()).toBeGreaterThan(200);
    const b = await restored.read(final, 'fin.', CAUSAL_B);
    expect(b.length).toBe(causal.sent);
    // A budget, not a speed test: alone it takes about 50 s here, beside the rest of the suite longer.
  }, 150_000);
});
