/**
 * Every metric the shipped alert rules and Grafana dashboard name is served by a live cluster
 * (deploy/prometheus/tidemark-alerts.yml, deploy/grafana/tidemark-dashboard.json): a coordinator
 * and two workers with metrics on, after a checkpoint, a restore and a verification, so that the
 * counters those add exist too. One worker serves its metrics as Kubernetes runs it: on every
 * interface with a token. Also: the workers' capture metrics and status agree that capture
 * caught up.
 */
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import { generateToken } from '../../services/core/index.js';
import { freePort, type TestCluster } from '../helpers/cluster.js';
import { declaredNames, parseMetrics, scrape, scrapeText } from '../helpers/metrics.js';
import { checkedInCatalog, exportedNames, unexportedMetrics } from '../helpers/metrics-catalog.js';
import { startProtectedVhost, type ProtectedVhost } from '../helpers/protected-vhost.js';
import { amqpUrlForVhost, type TestServices } from '../helpers/services.js';

const QUEUES = [
  { name: 'cat-a', type: 'classic' },
  { name: 'cat-b', type: 'quorum' },
] as const;
const MESSAGES = 20;
/**
 * Series that exist only while something is wrong (a coverage gap, a queue outside the cut):
 * served as declared metrics without samples on a healthy cluster. Every other metric named must
 * have samples.
 */
const ONLY_WHEN_WRONG = ['tidemark_coverage_gap_messages', 'tidemark_coverage_gap_path', 'tidemark_queue_outside_cut_since_timestamp_seconds'];

let services: TestServices;
let vhost: string;
let cluster: TestCluster;
let setup: ProtectedVhost | undefined;
const token = generateToken();
let exposedPort: number;

describe('the metrics alert rules and the dashboard name', () => {
  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tm-metrics-token-'));
    const tokenFile = join(dir, 'metrics-token');
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    exposedPort = await freePort();
    setup = await startProtectedVhost({
      exchange: 'cat',
      queues: QUEUES,
      workers: 2,
      metrics: true,
      processEnv: { 'worker-2': { TIDEMARK_METRICS_LISTEN: `0.0.0.0:${exposedPort}`, TIDEMARK_METRICS_TOKEN_FILE: tokenFile } },
    });
    ({ services, vhost, cluster } = setup);
  }, 120_000);

  afterAll(async () => {
    await setup?.stop();
  });

  it('a worker bound to every interface demands the metrics token', async () => {
    const bare = await fetch(`http://127.0.0.1:${exposedPort}/metrics`);
    expect(bare.status).toBe(401);
    expect(await bare.text()).not.toContain(token);
    expect((await scrape(exposedPort, token)).get('tidemark_captured_queues')).toBeGreaterThanOrEqual(0);
  });

  it('are all served by the coordinator or the workers after a checkpoint, a restore and a verification', { timeout: 120_000 }, async () => {
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createConfirmChannel();
    for (let i = 0; i < MESSAGES; i += 1) for (const q of QUEUES) channel.publish('cat', q.name, Buffer.from(`m-${i}`), { persistent: true });
    await channel.waitForConfirms();
    await connection.close();

    const round = await cluster.client.checkpoint(true);
    expect(round.outcome, round.reason).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    let failedQueues = -1;
    for await (const event of cluster.client.restore({ checkpoint: String(round.epoch), prefix: 'r.' })) {
      if (event.event?.$case === 'done') failedQueues = event.event.value.failedQueues;
    }
    expect(failedQueues).toBe(0);
    let problems = -1;
    for await (const event of cluster.client.verify(String(round.epoch), true)) if (event.event?.$case === 'done') problems = event.event.value.problems;
    expect(problems).toBe(0);

    const texts = [await scrapeText(cluster.metricsPorts.coordinator), await scrapeText(cluster.metricsPorts['worker-1']), await scrapeText(exposedPort, token)];
    const [coordinator, ...workers] = texts.map(parseMetrics);
    const declared = new Set(texts.flatMap((t) => [...declaredNames(t)]));
    const sampled = new Set([coordinator, ...workers].flatMap((m) => [...exportedNames(m)]));
    const { rules, dashboard } = checkedInCatalog();
    expect(unexportedMetrics(rules, dashboard, declared)).toEqual([]);
    expect(unexportedMetrics(rules, dashboard, sampled).filter((n) => !ONLY_WHEN_WRONG.includes(n))).toEqual([]);

    // What the operator's questions read, with the values this run must give.
    expect(coordinator.get('tidemark_checkpoint_interval_seconds')).toBe(0);
    expect(coordinator.get('tidemark_last_checkpoint_messages')).toBe(MESSAGES * QUEUES.length);
    expect(coordinator.get('tidemark_restores_total{outcome="done"}')).toBe(1);
    expect(coordinator.get('tidemark_verifications_total{outcome="ok"}')).toBe(1);
    expect(coordinator.get('tidemark_verify_checked_records_total')).toBeGreaterThanOrEqual(MESSAGES * QUEUES.length);
    const sum = (name: string) => workers.reduce((n, m) => n + (m.get(name) ?? 0), 0);
    expect(sum('tidemark_captured_queues')).toBe(QUEUES.length);
    expect(sum('tidemark_restore_published_messages_total')).toBe(MESSAGES * QUEUES.length);
    expect(sum('tidemark_restore_queues_total{outcome="done"}')).toBe(QUEUES.length);
    expect(sum('tidemark_segment_upload_duration_seconds_count')).toBeGreaterThanOrEqual(QUEUES.length);
    expect(sum('tidemark_segment_upload_bytes_total')).toBeGreaterThan(0);
    for (const q of QUEUES) {
      const offsets = workers.map((m) => m.get(`tidemark_capture_durable_offset{vhost="${vhost}",queue="${q.name}"}`)).filter((v) => v !== undefined);
      expect(offsets, `one worker reports ${q.name}`).toHaveLength(1);
      expect(offsets[0]).toBeGreaterThanOrEqual(MESSAGES);
    }
  });

  it('capture lag is 0 once capture caught up, in the metrics and in status', { timeout: 60_000 }, async () => {
    const status = await cluster.waitForStatus((s) => s.workers.every((w) => w.reachable && w.lagMessages === 0), 'every worker caught up');
    expect(status.captureLag).toEqual([]);
    const workers = [await scrape(cluster.metricsPorts['worker-1']), await scrape(exposedPort, token)];
    for (const q of QUEUES) {
      const lag = workers.map((m) => m.get(`tidemark_capture_lag_seconds{vhost="${vhost}",queue="${q.name}"}`)).filter((v) => v !== undefined);
      expect(lag).toEqual([0]);
    }
    for (const m of workers) expect(m.get('tidemark_capture_max_lag_seconds')).toBe(0);
  });
});
