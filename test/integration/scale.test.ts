/**
 * Scale: up to 1,000 protected queues over three workers. Every queue gets a journal and an owner,
 * a checkpoint holds all of them as one cut, and restored samples are exact journal prefixes.
 *
 * The queue count fits the broker: each journal holds files open, and a RabbitMQ 3.10 node past
 * its open-file limit breaks until restarted. So the test asks the broker's budget first (the
 * resource guard's, helpers/broker-budget.ts) and runs as many queues as fit, printing its choice:
 * 1,000 with `nofile` 20,000, about 150 with RabbitMQ's default of 1,024.
 */
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import { queuesTheBrokerAllows } from '../helpers/broker-budget.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';
import { RestoredQueues } from '../helpers/verify.js';

const WANTED = 1_000;
/** Fewer than this and the broker is too small for a scale test at all. */
const AT_LEAST = 30;
let queueCount = 0;
let queueNames: string[] = [];
/** Messages per queue: the queue's index mod 7, so counts differ and some queues stay empty. */
const perQueue = (i: number) => i % 7;

let services: TestServices;
let vhost: string;
let cluster: TestCluster;

describe(`up to ${WANTED} queues (as many as the broker has room for) over three workers`, () => {
  beforeAll(async () => {
    services = await testServices();
    const allowance = await queuesTheBrokerAllows(services.managementUrl, WANTED);
    console.log(`scale test: ${allowance.note}`);
    if (allowance.count < AT_LEAST) {
      throw new Error(`${allowance.note}. A scale test needs room for at least ${AT_LEAST}: raise RabbitMQ's nofile (docs/OPERATIONS.md#broker-resources)`);
    }
    queueCount = allowance.count;
    queueNames = Array.from({ length: queueCount }, (_, i) => `s${String(i).padStart(4, '0')}`);
    vhost = uniqueName('tm-scale');
    await createTestVhost(services.managementUrl, vhost);
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createChannel();
    await channel.assertExchange('scale', 'direct', { durable: true });
    for (const name of queueNames) {
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
      (s) => s.protectedQueues === queueCount && s.workers.length === 3 && s.workers.reduce((n, w) => n + w.queues, 0) === queueCount,
      `${queueCount} queues protected and assigned`,
      240_000,
    );
  }, 300_000);

  afterAll(async () => {
    await cluster?.stop();
    // A thousand queues and their journals take the broker a while to delete.
    if (vhost) await deleteTestVhost(services.managementUrl, vhost, 150_000);
  }, 180_000);

  it('spreads the queues over the workers, checkpoints all of them as one cut, and restores samples exactly', async () => {
    const status = await cluster.client.status();
    // Rendezvous hashing: each of three workers owns about a third, within 4 standard deviations.
    const spread = 4 * Math.sqrt((queueCount * 2) / 9);
    for (const w of status.workers) {
      expect(w.queues, `${w.workerId}'s share`).toBeGreaterThan(queueCount / 3 - spread);
      expect(w.queues).toBeLessThan(queueCount / 3 + spread);
    }

    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createConfirmChannel();
    queueNames.forEach((name, i) => {
      for (let k = 0; k < perQueue(i); k += 1) channel.publish('scale', name, Buffer.from(`${name}:${k}`), { messageId: `${name}:${k}` });
    });
    await channel.waitForConfirms();
    await connection.close();

    const round = await cluster.client.checkpoint(true);
    expect(round.reason).toBe('');
    expect(round.outcome).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    const manifest = await cluster.client.getCheckpoint(String(round.epoch));
    expect(manifest.queues).toHaveLength(queueCount);
    expect(manifest.messages).toBe(queueNames.reduce((n, _, i) => n + perQueue(i), 0));
    for (const [i, name] of queueNames.entries()) {
      const entry = manifest.queues.find((q) => q.definition!.name === name);
      expect(entry?.messages, name).toBe(perQueue(i));
    }

    // A sample of queues (every 50th, and the ones at the ends) restores exactly.
    const sample = queueNames.filter((_, i) => i % 50 === 6 || i === queueCount - 1);
    let failed = -1;
    for await (const event of cluster.client.restore({ checkpoint: String(round.epoch), queues: sample.map((q) => `${vhost}:${q}`), prefix: 'r.' })) {
      if (event.event?.$case === 'done') failed = event.event.value.failedQueues;
    }
    expect(failed).toBe(0);
    const sampled = { ...manifest, queues: manifest.queues.filter((q) => sample.includes(q.definition!.name)) };
    await new RestoredQueues(services.amqpUrl, vhost).expectExactPrefixes(sampled, 'r.');
  }, 300_000);
});
