/**
 * Coverage: publishes a journal cannot see (to the default exchange, straight into the queue)
 * are detected and shown in status, for that queue only; what bindings route is not a gap.
 * Dead-lettered messages, which no journal receives and no publish counter counts, show as a
 * gap of the queue they enter: from the topology at the next discovery pass, and counted once
 * the queue is idle (docs/OPERATIONS.md#coverage).
 */
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COVERAGE_SETTLE_MS } from '../../services/coordinator/coverage.js';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import { runCli } from '../helpers/cli.js';
import type { TestCluster } from '../helpers/cluster.js';
import { freePort } from '../helpers/cluster.js';
import { scrape } from '../helpers/metrics.js';
import { RoundRobinProducer } from '../helpers/producers.js';
import { amqpUrlForVhost, type TestServices } from '../helpers/services.js';
import { startProtectedVhost, type ProtectedVhost } from '../helpers/protected-vhost.js';

const QUEUES = [
  { name: 'cov-a', type: 'classic' },
  { name: 'cov-b', type: 'quorum' },
] as const;
const BYPASSING = 7;
const DEAD_LETTERED = 6;
/** Not protected (`cov-*` is): expired messages leave it through its dead-letter exchange into cov-b. */
const DL_SOURCE = 'expiring';

let services: TestServices;
let vhost: string;
let cluster: TestCluster;
let setup: ProtectedVhost | undefined;
let metricsPort: number;

describe('coverage of protected queues', () => {
  beforeAll(async () => {
    metricsPort = await freePort();
    setup = await startProtectedVhost({
      exchange: 'cov',
      queues: QUEUES,
      workers: 2,
      processEnv: { coordinator: { TIDEMARK_METRICS_LISTEN: `127.0.0.1:${metricsPort}` } },
    });
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

  it('reports a protected queue fed by dead-lettering at the next discovery pass, and counts what entered once it is idle', async () => {
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createConfirmChannel();
    // cov-b's own binding (exchange cov, key cov-b) is where dead-lettered messages enter it.
    await channel.assertQueue(DL_SOURCE, {
      durable: true,
      arguments: { 'x-message-ttl': 100, 'x-dead-letter-exchange': 'cov', 'x-dead-letter-routing-key': 'cov-b' },
    });
    const reason = `fed by dead-lettering from ${DL_SOURCE}`;
    const declaredAt = Date.now();
    // Within one discovery pass (1 s here) and the status call: before any message moves.
    const found = await cluster.waitForStatus((s) => s.coverageGaps.some((g) => g.queue === 'cov-b'), 'a dead-lettering path into cov-b', 10_000);
    expect(Date.now() - declaredAt).toBeLessThan(10_000);
    expect(found.coverageGaps.find((g) => g.queue === 'cov-b')).toEqual(expect.objectContaining({ vhost, reason }));

    const earlier = await cluster.client.checkpoint(true);
    expect(earlier.outcome).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    for (let i = 0; i < DEAD_LETTERED; i += 1) channel.sendToQueue(DL_SOURCE, Buffer.from(`expires ${i}`));
    await channel.waitForConfirms();
    await connection.close();
    const sentAt = Date.now();
    // Counted once cov-b's counters have settled: statistics (5 s) + COVERAGE_SETTLE_MS + a pass.
    const counted = await cluster.waitForStatus(
      (s) => s.coverageGaps.some((g) => g.queue === 'cov-b' && g.uncaptured === DEAD_LETTERED),
      'the dead-lettered messages counted',
      5_000 + COVERAGE_SETTLE_MS + 10_000,
    );
    expect(Date.now() - sentAt).toBeLessThan(5_000 + COVERAGE_SETTLE_MS + 10_000);
    expect(counted.coverageGaps.find((g) => g.queue === 'cov-b')).toEqual(
      expect.objectContaining({ vhost, uncaptured: DEAD_LETTERED, sourcePublished: 0, captured: 0, reason: `${DEAD_LETTERED} entered without a publish (dead-lettered?); ${reason}` }),
    );

    const json = JSON.parse((await runCli(['status', '--json'], cluster.env)).stdout) as { coverageGaps: Array<{ queue: string; reason: string; uncaptured: number }> };
    expect(json.coverageGaps.find((g) => g.queue === 'cov-b')).toEqual(expect.objectContaining({ uncaptured: DEAD_LETTERED, reason: expect.stringContaining(reason) }));
    const plain = await runCli(['status'], cluster.env);
    expect(plain.stdout).toMatch(new RegExp(`${vhost}\\s+cov-b\\s+0\\s+0\\s+${DEAD_LETTERED}\\s+.*${reason}`));
    const metrics = await scrape(metricsPort);
    expect(metrics.get(`tidemark_coverage_gap_messages{vhost="${vhost}",queue="cov-b"}`)).toBe(DEAD_LETTERED);
    expect(metrics.get(`tidemark_coverage_gap_path{vhost="${vhost}",queue="cov-b",path="${reason}"}`)).toBe(1);
    expect(metrics.get(`tidemark_coverage_gap_path{vhost="${vhost}",queue="cov-b",path="entered without a publish (dead-lettered?)"}`)).toBe(1);

    // The messages are in cov-b, and in no checkpoint: the next one holds what the one before did.
    const round = await cluster.client.checkpoint(true);
    expect(round.outcome).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    const cut = async (epoch: number) => (await cluster.client.getCheckpoint(String(epoch))).queues.find((q) => q.definition!.name === 'cov-b')?.messages;
    expect(await cut(round.epoch)).toBe(await cut(earlier.epoch));
  }, 120_000);
});
