/**
 * Journals never fill the broker's disk: with `journalMaxBytes`, a journal keeps only about that
 * much of its queue's traffic (RabbitMQ removes whole segments once the bound is passed), while
 * capture, which keeps up, still checkpoints every message. Here a journal bounded at 3 MB takes
 * about 12 MB of traffic.
 */
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import { drainQueue } from '../chaos/restore-check.js';
import type { TestCluster } from '../helpers/cluster.js';
import { streamHolds } from '../helpers/stream-holds.js';
import { startProtectedVhost, type ProtectedVhost } from '../helpers/protected-vhost.js';
import { amqpUrlForVhost, type TestServices } from '../helpers/services.js';

const BUDGET = 3_000_000;
const MESSAGES = 3_000;
const BODY = 4_096;

let services: TestServices;
let vhost: string;
let cluster: TestCluster;
let setup: ProtectedVhost | undefined;

describe('a journal with a size bound', () => {
  beforeAll(async () => {
    setup = await startProtectedVhost({
      exchange: 'js',
      queues: [{ name: 'js-busy', type: 'classic' }],
      workers: 1,
      processEnv: { coordinator: { TIDEMARK_JOURNAL_MAX_BYTES: String(BUDGET) } },
    });
    ({ services, vhost, cluster } = setup);
  });

  afterAll(async () => {
    await setup?.stop();
  });

  it('keeps about its budget of the queue\'s traffic, and capture still checkpoints every message', { timeout: 180_000 }, async () => {
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createConfirmChannel();
    const body = Buffer.alloc(BODY, 'x');
    for (let i = 0; i < MESSAGES; i += 100) {
      for (let k = i; k < i + 100; k += 1) channel.publish('js', 'js-busy', body, { messageId: `m-${k}`, persistent: true });
      await channel.waitForConfirms();
    }
    await connection.close();

    const round = await cluster.client.checkpoint(true);
    expect(round.outcome, round.reason).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    const manifest = await cluster.client.getCheckpoint(String(round.epoch));
    const entry = manifest.queues[0];
    expect(entry.messages).toBe(MESSAGES);

    // The journal dropped its oldest segments: it holds about the budget, not the 12 MB it took.
    const held = await streamHolds(services.amqpUrl, vhost, entry.journal);
    expect(held.first, 'first offset the journal still holds').toBeGreaterThan(0);
    expect(held.records * BODY, 'bytes the journal still holds').toBeLessThan(2 * BUDGET);

    // Every message is in the checkpoint all the same: restored exactly, in order.
    for await (const event of cluster.client.restore({ checkpoint: String(round.epoch), prefix: 'r.' })) {
      if (event.event?.$case === 'done') expect(event.event.value.failedQueues).toBe(0);
    }
    const restored = await drainQueue(services.amqpUrl, vhost, 'r.js-busy', 'classic', MESSAGES);
    expect(restored).toEqual(Array.from({ length: MESSAGES }, (_, k) => `m-${k}`));
  });
});
