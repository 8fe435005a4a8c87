/**
 * G8: one queue that cannot be captured never stops the checkpoints of the others. Against real
 * RabbitMQ, Redis and a file store: two protected queues, and the store refuses one queue's segment
 * writes (its segment folder replaced by a file, which no process, root included, can write
 * under). Rounds keep committing the other queue; the broken one is carried from its last good
 * cut, marked outside the cut (since when, why) in the manifest, the status and the restore plan;
 * restoring the latest checkpoint gives both queues, the broken one as of that cut. Once writes
 * work again the queue comes back inside the cut with nothing lost: its capture kept its base.
 * A journal replaced behind Tidemark's back stops only its own queue's capture, named in the mark.
 */
import amqp from 'amqplib';
import { existsSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import type { CheckpointManifest } from '../../services/gen/tidemark/v1/store.js';
import { segmentPrefix } from '../../services/core/store/keys.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { RoundRobinProducer } from '../helpers/producers.js';
import { RestoredQueues, restoreWithPrefix } from '../helpers/verify.js';
import { declareBoundQueues } from '../helpers/broker.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';

const QUEUES = [
  { name: 'p-ok', type: 'classic' },
  { name: 'p-broken', type: 'quorum' },
];

let services: TestServices;
let vhost: string;
let namespace: string;
let cluster: TestCluster;

async function publish(count: number): Promise<RoundRobinProducer> {
  const producer = new RoundRobinProducer(services.amqpUrl, vhost, 'work', QUEUES.map((q) => q.name), { maxMessages: count, window: 16 });
  producer.start();
  await producer.finished();
  expect(producer.total()).toBe(count);
  return producer;
}

async function commit(): Promise<{ epoch: number; reason: string; manifest: CheckpointManifest }> {
  const reply = await cluster.client.checkpoint(true);
  expect(reply.outcome, `round ${reply.epoch}: ${reply.reason}`).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
  return { epoch: reply.epoch, reason: reply.reason, manifest: await cluster.client.getCheckpoint(String(reply.epoch)) };
}

const entryOf = (m: CheckpointManifest, name: string) => m.queues.find((q) => q.definition!.name === name)!;

describe('partial rounds (G8): one queue that cannot be captured never stops the others', () => {
  beforeAll(async () => {
    services = await testServices();
    vhost = uniqueName('tm-partial');
    namespace = uniqueName('tmp');
    await createTestVhost(services.managementUrl, vhost);
    await declareBoundQueues(services.amqpUrl, vhost, 'work', QUEUES);
    cluster = await startTestCluster({
      services,
      namespace,
      protect: `${vhost}:p-*`,
      store: { kind: 'file' },
      workers: 1,
      prepareTimeout: '3s',
      extraEnv: { TIDEMARK_LEASE_TIME: '3s', TIDEMARK_DISCOVERY_INTERVAL: '1s' },
    });
    await cluster.waitForStatus((s) => s.protectedQueues === QUEUES.length && s.workers.length === 1 && s.workers[0].queues === QUEUES.length, 'both queues assigned');
  });

  afterAll(async () => {
    await cluster?.stop();
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
  });

  it('commits the healthy queue, carries the broken one from its last good cut (restorable, and said so), and takes it back once it heals', async () => {
    const first = await publish(40);
    const good = await commit();
    expect(good.reason).toBe('');
    expect(good.manifest.queues.every((q) => !q.outsideCut)).toBe(true);

    // The store refuses every segment write of p-broken from now on.
    const folder = join(fileURLToPath(cluster.storeUrl), segmentPrefix(vhost, 'p-broken')).replace(/\/$/, '');
    expect(existsSync(folder), 'p-broken has segments').toBe(true);
    renameSync(folder, `${folder}.aside`);
    writeFileSync(folder, 'not a folder');
    let healed = false;
    const heal = () => {
      if (healed) return;
      healed = true;
      rmSync(folder, { force: true });
      renameSync(`${folder}.aside`, folder);
    };
    try {
      const second = await publish(40);
      const partial = await commit();
      expect(partial.reason).toMatch(/1 queue\(s\) outside the cut: .*p-broken carried from checkpoint/);
      expect(entryOf(partial.manifest, 'p-ok').outsideCut).toBeUndefined();
      expect(entryOf(partial.manifest, 'p-ok').messages).toBe(40);
      const carried = entryOf(partial.manifest, 'p-broken');
      expect(carried.outsideCut).toMatchObject({ sinceEpoch: good.epoch, reason: expect.stringContaining('p-broken') });
      // Its last good cut, as checkpoint `good` holds it.
      expect({ cut: carried.cutOffset, messages: carried.messages }).toEqual({ cut: entryOf(good.manifest, 'p-broken').cutOffset, messages: 20 });

      // Rounds keep committing; the mark keeps its since_epoch and since_ms across them.
      const third = await publish(40);
      const later = await commit();
      expect(entryOf(later.manifest, 'p-ok').messages).toBe(60);
      expect(entryOf(later.manifest, 'p-broken').outsideCut).toMatchObject({ sinceEpoch: good.epoch, sinceMs: carried.outsideCut!.sinceMs });

      // What an operator sees: status, the catalog, and the restore plan.
      const status = await cluster.client.status();
      expect(status.outsideCut).toMatchObject([{ vhost, queue: 'p-broken', sinceEpoch: good.epoch, sinceMs: carried.outsideCut!.sinceMs }]);
      expect(status.strictRounds).toBe(false);
      const summary = (await cluster.client.listCheckpoints()).find((s) => s.epoch === later.epoch)!;
      expect(summary.outsideQueues).toBe(1);
      let planned: Array<{ sourceQueue: string; outsideCut?: { sinceEpoch: number } }> = [];
      for await (const event of cluster.client.restore({ checkpoint: 'latest', prefix: 'dry-', dryRun: true })) {
        if (event.event?.$case === 'plan') planned = event.event.value.queues;
      }
      expect(planned.find((q) => q.sourceQueue === 'p-broken')?.outsideCut?.sinceEpoch).toBe(good.epoch);
      expect(planned.find((q) => q.sourceQueue === 'p-ok')?.outsideCut).toBeUndefined();

      // Restoring the latest checkpoint gives both queues: p-broken as of its last good cut. (Its
      // old segments are back in place first: what the store lost for a while was only writes.)
      heal();
      const restored = new RestoredQueues(services.amqpUrl, vhost);
      await restoreWithPrefix(cluster.client, later.manifest, 'r3-');
      await restored.expectExactPrefixes(later.manifest, 'r3-');
      // (Each producer numbers its messages from 0: counts tell the producers apart, the exact
      // prefixes above tell what each queue holds.)
      const counts = async (m: CheckpointManifest, prefix: string, queue: string) => (await restored.read(m, prefix, queue)).length;
      expect(await counts(later.manifest, 'r3-', 'p-broken')).toBe(first.confirmed.get('p-broken')!.length);
      expect(await counts(later.manifest, 'r3-', 'p-ok')).toBe([first, second, third].reduce((n, p) => n + p.confirmed.get('p-ok')!.length, 0));

      // Healed: the queue takes part again, and since its capture kept its base (it adopted no
      // cut it was not counted in) nothing is missing from its chain.
      const fourth = await publish(40);
      const back = await commit();
      expect(back.reason).toBe('');
      expect(back.manifest.queues.every((q) => !q.outsideCut)).toBe(true);
      expect(entryOf(back.manifest, 'p-broken').messages).toBe(80);
      await restoreWithPrefix(cluster.client, back.manifest, 'r4-');
      await restored.expectExactPrefixes(back.manifest, 'r4-');
      expect(await counts(back.manifest, 'r4-', 'p-broken')).toBe([first, second, third, fourth].reduce((n, p) => n + p.confirmed.get('p-broken')!.length, 0));
      expect((await cluster.client.status()).outsideCut).toEqual([]);
    } finally {
      heal();
    }
  }, 180_000);

  it('keeps committing the others while a queue\'s journal is replaced behind Tidemark\'s back, naming the journal', async () => {
    // A journal deleted and declared again by someone else (without the time Tidemark records)
    // cannot be read from the queue's cut: its capture stops, and the queue stays outside the cut.
    const journal = `${namespace}.journal.p-broken`;
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    try {
      const channel = await connection.createChannel();
      await channel.deleteQueue(journal);
      await channel.assertQueue(journal, { durable: true, arguments: { 'x-queue-type': 'stream' } });
    } finally {
      await connection.close();
    }
    const last = await cluster.client.getCheckpoint('latest');
    await publish(20);
    const round = await commit();
    expect(entryOf(round.manifest, 'p-ok').outsideCut).toBeUndefined();
    expect(entryOf(round.manifest, 'p-ok').messages).toBe(entryOf(last, 'p-ok').messages + 10);
    expect(entryOf(round.manifest, 'p-broken').outsideCut).toMatchObject({ sinceEpoch: last.epoch, reason: expect.stringContaining(journal) });
    // The next round too: one broken queue never stops the others.
    await publish(20);
    const next = await commit();
    expect(entryOf(next.manifest, 'p-ok').messages).toBe(entryOf(last, 'p-ok').messages + 20);
    expect(entryOf(next.manifest, 'p-broken').outsideCut).toMatchObject({ sinceEpoch: last.epoch, sinceMs: entryOf(round.manifest, 'p-broken').outsideCut!.sinceMs });
    const status = await cluster.client.status();
    expect(status.outsideCut.map((q) => q.queue)).toEqual(['p-broken']);
    expect(status.lastRound?.reason).toContain('p-broken');
  }, 120_000);
});
