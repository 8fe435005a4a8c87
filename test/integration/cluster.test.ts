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
import { readQueue, readStream, withoutOrigin, type ReadMessage } from '../helpers/broker.js';
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

async function restore(manifest: CheckpointManifest, prefix: string): Promise<void> {
  let done = false;
  for await (const event of cluster.client.restore({ checkpoint: String(manifest.epoch), prefix })) {
    if (event.event?.$case === 'progress') expect(event.event.value.error).toBe('');
    if (event.event?.$case === 'done') {
      expect(event.event.value.failedQueues).toBe(0);
      expect(event.event.value.messages).toBe(manifest.messages);
      done = true;
    }
  }
  expect(done).toBe(true);
}

/** Reading a classic or quorum queue consumes it, so each restored queue is read once. */
const restoredReads = new Map<string, Promise<ReadMessage[]>>();

function restoredQueue(manifest: CheckpointManifest, prefix: string, name: string): Promise<ReadMessage[]> {
  const key = `${prefix}${name}`;
  let read = restoredReads.get(key);
  if (!read) {
    const entry = manifest.queues.find((q) => q.definition?.name === name)!;
    read = readQueue(services.amqpUrl, vhost, key, entry.definition!.type, entry.messages);
    restoredReads.set(key, read);
  }
  return read;
}

/** G2 + G3: each restored queue is exactly its journal's prefix before this checkpoint's fence. */
async function expectExactPrefixes(manifest: CheckpointManifest, prefix: string): Promise<void> {
  for (const entry of manifest.queues) {
    const name = entry.definition!.name;
    const journal = await readStream(services.amqpUrl, vhost, entry.journal, entry.startOffset, entry.cutOffset + 1);
    const fence = journal[journal.length - 1];
    expect(fence.offset).toBe(entry.cutOffset);
    expect(Number(fence.headers['x-tidemark-fence'])).toBe(manifest.epoch);
    const expected = journal.slice(0, -1).filter((m) => m.headers['x-tidemark-fence'] === undefined);
    const restored = await restoredQueue(manifest, prefix, name);
    expect(restored.length, `${name}: restored count`).toBe(expected.length);
    expect(entry.messages).toBe(expected.length);
    restored.forEach((got, i) => {
      const want = expected[i];
      expect(got.body.equals(want.body), `${name}[${i}] body`).toBe(true);
      expect(Number(got.headers['x-tidemark-origin-offset']), `${name}[${i}] origin offset`).toBe(want.offset);
      expect(withoutOrigin(got.headers), `${name}[${i}] headers`).toEqual(want.headers);
      for (const p of ['messageId', 'contentType', 'correlationId', 'deliveryMode', 'priority', 'timestamp', 'appId'] as const) {
        expect(got.properties[p], `${name}[${i}] ${p}`).toEqual(want.properties[p]);
      }
    });
  }
}

/** Causality: a restored B_i implies its A_i (A_i was confirmed before B_i was published). */
async function expectCausal(manifest: CheckpointManifest, prefix: string): Promise<void> {
  const a = new Set((await restoredQueue(manifest, prefix, CAUSAL_A)).map((m) => Number(m.headers.causal)));
  const b = (await restoredQueue(manifest, prefix, CAUSAL_B)).map((m) => Number(m.headers.causal));
  const orphans = b.filter((i) => !a.has(i));
  expect(orphans, `B messages without their A in checkpoint ${manifest.epoch}`).toEqual([]);
}

describe('a three-worker cluster on RabbitMQ, Redis and S3', () => {
  beforeAll(async () => {
    services = await testServices();
    vhost = uniqueName('tm-cluster');
    await createTestVhost(services.managementUrl, vhost);
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

    await restore(underTraffic[1], 'mid.');
    await expectExactPrefixes(underTraffic[1], 'mid.');
    await expectCausal(underTraffic[1], 'mid.');

    await restore(final, 'fin.');
    await expectExactPrefixes(final, 'fin.');
    await expectCausal(final, 'fin.');

    // G4: after publishing stopped, the checkpoint holds every confirmed message, in order.
    for (const [queue, confirmed] of producer.confirmed) {
      const restored = await restoredQueue(final, 'fin.', queue);
      expect(restored.map((m) => m.properties.messageId), `${queue} confirmed messages`).toEqual(confirmed.map((c) => c.messageId));
    }
    expect(producer.total()).toBeGreaterThan(200);
    const b = await restoredQueue(final, 'fin.', CAUSAL_B);
    expect(b.length).toBe(causal.sent);
  });
});
