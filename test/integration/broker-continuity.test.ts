/**
 * G4 where the broker itself drops journal copies: RabbitMQ 3.10 can confirm publishes around a
 * node stop without writing their copy to a bound stream, with no offset gap. Tidemark cannot see
 * which messages are missing, so a checkpoint taken after a broker restart marks every queue of
 * the vhost as possibly incomplete, every later checkpoint keeps the mark, and status, the
 * checkpoint list and show, the restore plan and the metrics say so.
 *
 * The restart is detected through a transient sentinel queue per vhost (RabbitMQ deletes
 * transient queues when the node boots). The first tests remove the sentinel by hand, which is
 * what a restart does to it; the last one restarts the local broker's application for real.
 */
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManagementClient } from '../../services/core/amqp/management-client.js';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import type { CheckpointManifest } from '../../services/gen/tidemark/v1/store.js';
import { restartRabbitMQ } from '../chaos/own-services.js';
import { runCli } from '../helpers/cli.js';
import { freePort, type TestCluster } from '../helpers/cluster.js';
import { scrape } from '../helpers/metrics.js';
import { startProtectedVhost, type ProtectedVhost } from '../helpers/protected-vhost.js';
import { RoundRobinProducer } from '../helpers/producers.js';
import { amqpUrlForVhost, type TestServices } from '../helpers/services.js';

const QUEUES = [
  { name: 'brk-a', type: 'classic' },
  { name: 'brk-b', type: 'quorum' },
  { name: 'brk-c', type: 'stream' },
] as const;

let services: TestServices;
let vhost: string;
let cluster: TestCluster;
let setup: ProtectedVhost | undefined;
let metricsPort: number;
let management: ManagementClient;

async function publish(count: number): Promise<void> {
  const producer = new RoundRobinProducer(services.amqpUrl, vhost, 'brk', QUEUES.map((q) => q.name), { maxMessages: count });
  producer.start();
  await producer.finished();
}

async function checkpoint(): Promise<CheckpointManifest> {
  const round = await cluster.client.checkpoint(true);
  expect(round.outcome, round.reason).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
  return cluster.client.getCheckpoint(String(round.epoch));
}

/** The vhost's restart sentinel, if it exists: Tidemark's one transient queue there. */
async function sentinel(): Promise<{ name: string; durable: boolean } | undefined> {
  return (await management.listQueues(vhost)).find((q) => q.name.endsWith('.sentinel'));
}

const marks = (m: CheckpointManifest) => Object.fromEntries(m.queues.map((q) => [q.definition!.name, q.incomplete]));

describe('queues whose journals may lack confirmed messages (broker restarts)', () => {
  beforeAll(async () => {
    metricsPort = await freePort();
    setup = await startProtectedVhost({ exchange: 'brk', queues: QUEUES, workers: 2, processEnv: { coordinator: { TIDEMARK_METRICS_LISTEN: `127.0.0.1:${metricsPort}` } } });
    ({ services, vhost, cluster } = setup);
    management = new ManagementClient(services.managementUrl);
  });

  afterAll(async () => {
    await setup?.stop();
  });

  it('keeps a transient sentinel in the vhost, and marks nothing while it stays', async () => {
    const found = await sentinel();
    expect(found, 'the sentinel queue').toBeDefined();
    expect(found!.durable).toBe(false);
    await publish(30);
    const first = await checkpoint();
    await publish(30);
    const second = await checkpoint();
    for (const m of [first, second]) expect(Object.values(marks(m)).flat()).toEqual([]);
    expect((await cluster.client.status()).incompleteQueues).toEqual([]);
    expect((await scrape(metricsPort)).get('tidemark_incomplete_queues')).toBe(0);
  });

  it('marks every queue of the vhost once the sentinel is gone, keeps the mark in later checkpoints, and says so everywhere', async () => {
    const before = await cluster.client.getCheckpoint('latest');
    const cutBefore = Object.fromEntries(before.queues.map((q) => [q.definition!.name, q.cutOffset]));
    // What a broker restart does to the sentinel.
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createChannel();
    await channel.deleteQueue((await sentinel())!.name);
    await connection.close();

    await publish(30);
    const marked = await checkpoint();
    for (const q of QUEUES) {
      expect(marks(marked)[q.name], q.name).toEqual([
        expect.objectContaining({ epoch: marked.epoch, afterOffset: cutBefore[q.name], reason: expect.stringContaining('the broker restarted') }),
      ]);
    }
    // Declared again once the marks are committed: the next checkpoint keeps the mark, adds none.
    expect(await sentinel()).toBeDefined();
    await publish(30);
    const later = await checkpoint();
    for (const q of QUEUES) expect(marks(later)[q.name], q.name).toEqual(marks(marked)[q.name]);

    const status = JSON.parse((await runCli(['status', '--json'], cluster.env)).stdout) as { incompleteQueues: Array<{ queue: string; sinceEpoch: number; marks: number }> };
    expect(status.incompleteQueues.map((q) => [q.queue, q.sinceEpoch, q.marks]).sort()).toEqual(QUEUES.map((q) => [q.name, marked.epoch, 1]).sort());
    expect((await runCli(['status'], cluster.env)).stdout).toContain('POSSIBLY INCOMPLETE: the latest checkpoint marks 3 queue(s)');

    const list = JSON.parse((await runCli(['checkpoints', 'list', '--json'], cluster.env)).stdout) as { checkpoints: Array<{ epoch: number; incompleteQueues: number }> };
    expect(list.checkpoints.map((c) => [c.epoch, c.incompleteQueues])).toEqual(
      expect.arrayContaining([
        [before.epoch, 0],
        [marked.epoch, 3],
        [later.epoch, 3],
      ]),
    );
    const shown = await runCli(['checkpoints', 'show', 'latest'], cluster.env);
    expect(shown.stdout).toContain('POSSIBLY INCOMPLETE: 3 queue(s)');
    expect(shown.stdout).toMatch(new RegExp(`brk-a: after offset ${cutBefore['brk-a']}, marked in checkpoint ${marked.epoch}`));

    for await (const event of cluster.client.restore({ checkpoint: 'latest', dryRun: true, prefix: 'dry.' })) {
      if (event.event?.$case !== 'plan') continue;
      for (const q of event.event.value.queues) expect(q.incomplete.map((m) => m.epoch), q.sourceQueue).toEqual([marked.epoch]);
      break;
    }
    const dry = await runCli(['restore', '--checkpoint', 'latest', '--dry-run', '--prefix', 'dry.'], cluster.env);
    expect(dry.stdout).toContain(`POSSIBLY INCOMPLETE after journal offset ${cutBefore['brk-b']} (checkpoint ${marked.epoch})`);
    expect((await scrape(metricsPort)).get('tidemark_incomplete_queues')).toBe(3);
  });

  const local = ['localhost', '127.0.0.1'].includes(new URL(process.env.TIDEMARK_TEST_AMQP_URL || 'amqp://localhost').hostname);
  it.skipIf(!local)(
    'marks the queues in the first checkpoint after a real broker restart (skipped when the broker is not on this machine: it needs rabbitmqctl)',
    { timeout: 300_000 },
    async () => {
      const before = await cluster.client.getCheckpoint('latest');
      await publish(30);
      await restartRabbitMQ(services.amqpUrl, services.managementUrl, { downMs: 2_000, ownVhosts: [vhost], quietWaitMs: 30_000, log: () => {} });
      // The cluster reconnects on its own; the first round after that must carry a new mark.
      let after: CheckpointManifest | undefined;
      const deadline = Date.now() + 120_000;
      while (!after && Date.now() < deadline) {
        const round = await cluster.client.checkpoint(true).catch(() => undefined);
        if (round?.outcome === RoundOutcome.ROUND_OUTCOME_COMMITTED) after = await cluster.client.getCheckpoint(String(round.epoch));
        else await new Promise((r) => setTimeout(r, 1_000));
      }
      expect(after, 'a checkpoint committed after the restart').toBeDefined();
      for (const q of QUEUES) {
        const kept = marks(before)[q.name];
        expect(marks(after!)[q.name].slice(0, kept.length), q.name).toEqual(kept);
        expect(marks(after!)[q.name].slice(kept.length), q.name).toEqual([expect.objectContaining({ epoch: after!.epoch, afterOffset: before.queues.find((e) => e.definition!.name === q.name)!.cutOffset })]);
      }
    },
  );
});
