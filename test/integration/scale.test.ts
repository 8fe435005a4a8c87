/**
 * Scale: 1,000 protected queues over three workers. Every queue gets a journal and an owner, a
 * checkpoint holds all of them as one cut, and restored samples are exact journal prefixes.
 */
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';
import { RestoredQueues } from '../helpers/verify.js';

const COUNT = 1_000;
const QUEUES = Array.from({ length: COUNT }, (_, i) => `s${String(i).padStart(4, '0')}`);
/** Messages per queue: the queue's index mod 7, so counts differ and some queues stay empty. */
const perQueue = (i: number) => i % 7;

let services: TestServices;
let vhost: string;
let cluster: TestCluster;

describe(`${COUNT} queues over three workers`, () => {
  beforeAll(async () => {
    services = await testServices();
    vhost = uniqueName('tm-scale');
    await createTestVhost(services.managementUrl, vhost);
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createChannel();
    await channel.assertExchange('scale', 'direct', { durable: true });
    for (const name of QUEUES) {
      await channel.assertQueue(name, { durable: true });
      await channel.bindQueue(name, 'scale', name);
    }
    await connection.close();
    cluster = await startTestCluster({
      services,
      namespace: uniqueName('tms'),
      protect: `${vhost}:s*`,
      store: { kind: 'file' },
      workers: 3,
      prepareTimeout: '60s',
    });
    await cluster.waitForStatus(
      (s) => s.protectedQueues === COUNT && s.workers.length === 3 && s.workers.reduce((n, w) => n + w.queues, 0) === COUNT,
      `${COUNT} queues protected and assigned`,
      240_000,
    );
  }, 300_000);

  afterAll(async () => {
    await cluster?.stop();
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
  }, 120_000);

  it('spreads the queues over the workers, checkpoints all of them as one cut, and restores samples exactly', async () => {
    const status = await cluster.client.status();
    for (const w of status.workers) {
      // Rendezvous hashing: each of three workers owns about a third.
      expect(w.queues, `${w.workerId}'s share`).toBeGreaterThan(COUNT / 4);
      expect(w.queues).toBeLessThan(COUNT / 2);
    }

    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createConfirmChannel();
    QUEUES.forEach((name, i) => {
      for (let k = 0; k < perQueue(i); k += 1) channel.publish('scale', name, Buffer.from(`${name}:${k}`), { messageId: `${name}:${k}` });
    });
    await channel.waitForConfirms();
    await connection.close();

    const round = await cluster.client.checkpoint(true);
    expect(round.reason).toBe('');
    expect(round.outcome).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    const manifest = await cluster.client.getCheckpoint(String(round.epoch));
    expect(manifest.queues).toHaveLength(COUNT);
    expect(manifest.messages).toBe(QUEUES.reduce((n, _, i) => n + perQueue(i), 0));
    for (const [i, name] of QUEUES.entries()) {
      const entry = manifest.queues.find((q) => q.definition!.name === name);
      expect(entry?.messages, name).toBe(perQueue(i));
    }

    // A sample of queues (every 50th, and the ones at the ends) restores exactly.
    const sample = QUEUES.filter((_, i) => i % 50 === 6 || i === COUNT - 1);
    let failed = -1;
    for await (const event of cluster.client.restore({ checkpoint: String(round.epoch), queues: sample.map((q) => `${vhost}:${q}`), prefix: 'r.' })) {
      if (event.event?.$case === 'done') failed = event.event.value.failedQueues;
    }
    expect(failed).toBe(0);
    const sampled = { ...manifest, queues: manifest.queues.filter((q) => sample.includes(q.definition!.name)) };
    await new RestoredQueues(services.amqpUrl, vhost).expectExactPrefixes(sampled, 'r.');
  }, 300_000);
});
