/**
 * A journal longer than one stream segment file. RabbitMQ opens each segment file (500 MB by
 * default) with an entry that has an offset but is never delivered to AMQP consumers, so a
 * journal's delivered offsets skip one there. Capture must read across those holes, and restores
 * must be exact. The journal is declared here with 64 KB segment files before Tidemark protects
 * the queue (discovery never re-declares an existing journal), so a few hundred messages cross
 * several file boundaries.
 */
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { journalName } from '../../services/core/format/names.js';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import { declareBoundQueues, readStream } from '../helpers/broker.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';
import { RestoredQueues, restoreWithPrefix } from '../helpers/verify.js';

const EXCHANGE = 'seg';
const MESSAGES = 600;

let services: TestServices;
let vhost: string;
let namespace: string;
let cluster: TestCluster;

describe('a journal spanning several stream segment files', () => {
  beforeAll(async () => {
    services = await testServices();
    vhost = uniqueName('tm-seg');
    namespace = uniqueName('tms');
    await createTestVhost(services.managementUrl, vhost);
    await declareBoundQueues(services.amqpUrl, vhost, EXCHANGE, [{ name: 'seg-a', type: 'classic' }]);
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createChannel();
    await channel.assertQueue(journalName(namespace, vhost, 'seg-a'), {
      durable: true,
      arguments: { 'x-queue-type': 'stream', 'x-max-age': '7D', 'x-stream-max-segment-size-bytes': 64_000 },
    });
    await connection.close();
    cluster = await startTestCluster({
      services,
      namespace,
      protect: `${vhost}:seg-*`,
      store: { kind: 'file' },
      workers: 1,
      extraEnv: { TIDEMARK_DISCOVERY_INTERVAL: '1s' },
    });
    await cluster.waitForStatus((s) => s.protectedQueues === 1 && s.workers.reduce((n, w) => n + w.queues, 0) === 1, 'the queue assigned');
  });

  afterAll(async () => {
    await cluster?.stop();
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
  });

  it('captures across the offsets the broker skips, checkpoints every message and restores them exactly', async () => {
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createConfirmChannel();
    for (let i = 0; i < MESSAGES; i += 1) {
      channel.publish(EXCHANGE, 'seg-a', Buffer.alloc(1024, i % 251), { messageId: `m-${i}`, headers: { i } });
      if (i % 100 === 99) await channel.waitForConfirms();
    }
    await channel.waitForConfirms();
    await connection.close();

    const round = await cluster.client.checkpoint(true);
    expect(round.outcome, round.reason).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    const manifest = await cluster.client.getCheckpoint(String(round.epoch));
    const entry = manifest.queues.find((q) => q.definition!.name === 'seg-a')!;
    expect(entry.messages).toBe(MESSAGES);

    // The journal really has holes (otherwise this test proves nothing).
    const journal = await readStream(services.amqpUrl, vhost, entry.journal, entry.startOffset, entry.cutOffset + 1);
    const holes = journal.filter((m, k) => k > 0 && m.offset! !== journal[k - 1].offset! + 1).length;
    expect(holes, 'segment-file boundaries inside the checkpoint').toBeGreaterThanOrEqual(3);
    expect(entry.segments.length, 'segments end at the holes').toBeGreaterThanOrEqual(holes);

    await restoreWithPrefix(cluster.client, manifest, 'r-');
    const restored = new RestoredQueues(services.amqpUrl, vhost);
    await restored.expectExactPrefixes(manifest, 'r-');
    expect((await restored.read(manifest, 'r-', 'seg-a')).map((m) => Number(m.headers.i))).toEqual([...Array(MESSAGES).keys()]);
  }, 120_000);
});
