/**
 * Coverage: publishes a journal cannot see (to the default exchange, straight into the queue)
 * are detected and shown in status, for that queue only; what bindings route is not a gap.
 */
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COVERAGE_SETTLE_MS } from '../../services/coordinator/coverage.js';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import { runCli } from '../helpers/cli.js';
import type { TestCluster } from '../helpers/cluster.js';
import { RoundRobinProducer } from '../helpers/producers.js';
import { amqpUrlForVhost, type TestServices } from '../helpers/services.js';
import { startProtectedVhost, type ProtectedVhost } from '../helpers/protected-vhost.js';

const QUEUES = [
  { name: 'cov-a', type: 'classic' },
  { name: 'cov-b', type: 'quorum' },
] as const;
const BYPASSING = 7;

let services: TestServices;
let vhost: string;
let cluster: TestCluster;
let setup: ProtectedVhost | undefined;

describe('coverage of protected queues', () => {
  beforeAll(async () => {
    setup = await startProtectedVhost({ exchange: 'cov', queues: QUEUES, workers: 2 });
    ({ services, vhost, cluster } = setup);
  });

  afterAll(async () => {
    await setup?.stop();
  });

  it('reports default-exchange publishes as uncaptured for their queue only, in status and its --json', async () => {
    const producer = new RoundRobinProducer(services.amqpUrl, vhost, 'cov', QUEUES.map((q) => q.name), { maxMessages: 40 });
    producer.start();
    await producer.finished();
    // Routed by bindings: captured, no gap. Idle until the leader has taken both baselines (the
    // broker's statistics settle within 5 s, then it needs COVERAGE_SETTLE_MS unchanged); status
    // says how many queues are not checked yet.
    const idle = await cluster.waitForStatus((s) => s.coverageUnchecked === 0, 'both queues checked', 5_000 + 3 * COVERAGE_SETTLE_MS);
    expect(idle.coverageGaps).toEqual([]);
    expect((await runCli(['status'], cluster.env)).stdout).not.toContain('not checked yet');

    // Straight into cov-a through the default exchange: the journal never sees these.
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createConfirmChannel();
    for (let i = 0; i < BYPASSING; i += 1) channel.sendToQueue('cov-a', Buffer.from(`bypass ${i}`));
    await channel.waitForConfirms();
    await connection.close();

    const status = await cluster.waitForStatus((s) => s.coverageGaps.length > 0, 'a coverage gap reported', 60_000);
    expect(status.coverageGaps).toEqual([expect.objectContaining({ vhost, queue: 'cov-a', uncaptured: BYPASSING, captured: 0, sourcePublished: BYPASSING })]);

    const plain = await runCli(['status'], cluster.env);
    expect(plain.stdout).toContain('COVERAGE GAPS: 1 queue(s)');
    expect(plain.stdout).toMatch(new RegExp(`${vhost}\\s+cov-a\\s+${BYPASSING}\\s+0\\s+${BYPASSING}`));
    const json = JSON.parse((await runCli(['status', '--json'], cluster.env)).stdout) as { coverageGaps: unknown[]; coverageUnchecked: number };
    expect(json.coverageGaps).toEqual([expect.objectContaining({ vhost, queue: 'cov-a', uncaptured: BYPASSING })]);
    expect(json.coverageUnchecked).toBe(0);

    // It is a real gap: a checkpoint holds only what the bindings routed.
    const round = await cluster.client.checkpoint(true);
    expect(round.outcome).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    const manifest = await cluster.client.getCheckpoint(String(round.epoch));
    expect(manifest.queues.find((q) => q.definition!.name === 'cov-a')?.messages).toBe(producer.confirmed.get('cov-a')!.length);
  }, 180_000);
});
