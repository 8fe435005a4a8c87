/**
 * The coordinator's Prometheus endpoint (metricsListen): what a scrape shows after a committed
 * checkpoint, and a coverage gap (publishes to the default exchange) as a metric of its queue.
 */
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import { freePort, type TestCluster } from '../helpers/cluster.js';
import { scrape } from '../helpers/metrics.js';
import { RoundRobinProducer } from '../helpers/producers.js';
import { amqpUrlForVhost, type TestServices } from '../helpers/services.js';
import { startProtectedVhost, type ProtectedVhost } from '../helpers/protected-vhost.js';

const QUEUES = [
  { name: 'met-a', type: 'classic' },
  { name: 'met-b', type: 'quorum' },
] as const;
const BYPASSING = 5;

let services: TestServices;
let vhost: string;
let cluster: TestCluster;
let setup: ProtectedVhost | undefined;
let metricsPort: number;

describe('coordinator metrics endpoint', () => {
  beforeAll(async () => {
    metricsPort = await freePort();
    setup = await startProtectedVhost({ exchange: 'met', queues: QUEUES, workers: 2, processEnv: { coordinator: { TIDEMARK_METRICS_LISTEN: `127.0.0.1:${metricsPort}` } } });
    ({ services, vhost, cluster } = setup);
  });

  afterAll(async () => {
    await setup?.stop();
  });

  it('shows the leader, its protected queues and workers, and a committed checkpoint with its round', async () => {
    const before = await scrape(metricsPort);
    expect(before.get('tidemark_leader')).toBe(1);
    expect(before.get('tidemark_rounds_total{outcome="committed"}')).toBe(0);
    expect(before.get('tidemark_last_committed_epoch')).toBe(0);

    const producer = new RoundRobinProducer(services.amqpUrl, vhost, 'met', QUEUES.map((q) => q.name), { maxMessages: 30 });
    producer.start();
    await producer.finished();
    const round = await cluster.client.checkpoint(true);
    expect(round.outcome, round.reason).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    const manifest = await cluster.client.getCheckpoint(String(round.epoch));
    const status = await cluster.client.status();

    const after = await scrape(metricsPort);
    expect(after.get('tidemark_leader')).toBe(1);
    expect(after.get('tidemark_protected_queues')).toBe(2);
    expect(after.get('tidemark_workers')).toBe(2);
    expect(after.get('tidemark_rounds_total{outcome="committed"}')).toBe(1);
    expect(after.get('tidemark_rounds_total{outcome="aborted"}')).toBe(0);
    expect(after.get('tidemark_round_duration_seconds_count{outcome="committed"}')).toBe(1);
    expect(after.get('tidemark_round_duration_seconds_sum{outcome="committed"}')).toBe(status.lastRound!.durationMs / 1000);
    expect(after.get('tidemark_round_duration_seconds_bucket{le="+Inf",outcome="committed"}')).toBe(1);
    expect(after.get('tidemark_last_committed_epoch')).toBe(round.epoch);
    expect(after.get('tidemark_last_commit_timestamp_seconds')).toBe(manifest.committedAtMs / 1000);
    expect(after.get('tidemark_coverage_gap_queues')).toBe(0);
  });

  it('answers 404 to anything but GET /metrics', async () => {
    const base = `http://127.0.0.1:${metricsPort}`;
    expect((await fetch(`${base}/`)).status).toBe(404);
    expect((await fetch(`${base}/metrics/extra`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: 'POST' })).status).toBe(404);
    expect((await fetch(`${base}/metrics?debug=1`)).status).toBe(200);
  });

  it('shows default-exchange publishes into a protected queue as its coverage gap', async () => {
    // Idle until the leader has a coverage baseline for both queues: a gap before it would be
    // folded into the baseline and never shown.
    const checkedBy = Date.now() + 90_000;
    while ((await scrape(metricsPort)).get('tidemark_coverage_unchecked_queues') !== 0 && Date.now() < checkedBy) {
      await new Promise((r) => setTimeout(r, 500));
    }
    const idle = await scrape(metricsPort);
    expect(idle.get('tidemark_coverage_unchecked_queues')).toBe(0);
    expect([...idle.keys()].filter((k) => k.startsWith('tidemark_coverage_gap_messages'))).toEqual([]);

    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createConfirmChannel();
    for (let i = 0; i < BYPASSING; i += 1) channel.sendToQueue('met-b', Buffer.from(`bypass ${i}`));
    await channel.waitForConfirms();
    await connection.close();

    const series = `tidemark_coverage_gap_messages{vhost="${vhost}",queue="met-b"}`;
    const deadline = Date.now() + 60_000;
    let metrics = await scrape(metricsPort);
    while (!metrics.has(series) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      metrics = await scrape(metricsPort);
    }
    expect(metrics.get(series)).toBe(BYPASSING);
    expect(metrics.get('tidemark_coverage_gap_queues')).toBe(1);
    expect([...metrics.keys()].filter((k) => k.startsWith('tidemark_coverage_gap_messages'))).toEqual([series]);
  }, 180_000);
});
