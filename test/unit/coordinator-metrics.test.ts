import { describe, expect, it } from 'vitest';
import { CoordinatorMetrics, type CoordinatorReadings } from '../../services/coordinator/coordinator-metrics.js';
import type { QueueCoverage } from '../../services/coordinator/coverage.js';
import { parseMetrics as samples } from '../helpers/metrics.js';

const gap = (queue: string, uncaptured: number): QueueCoverage => ({ vhost: 'v1', queue, sourcePublished: uncaptured, captured: 0, uncaptured, sinceMs: 0, reason: `${uncaptured} published past its bindings (to the default exchange?)` });

function readings(overrides: Partial<CoordinatorReadings> = {}): CoordinatorReadings {
  return {
    leader: () => true,
    protectedQueues: () => 12,
    workers: async () => 3,
    lastCommit: () => ({ epoch: 42, committedAtMs: 1_700_000_000_500, messages: 900, bodyBytes: 123_456 }),
    intervalMs: () => 60_000,
    coverageGaps: () => [gap('orders', 7), gap('audit', 2)],
    coverageUnchecked: () => 4,
    incompleteQueues: () => 3,
    outsideCut: () => [{ vhost: 'v1', queue: 'stuck', sinceMs: 1_700_000_100_000 }],
    unprotectedQueues: () => 5,
    journalBoundBytes: () => 64 * 1024 * 1024,
    journalPressure: () => true,
    ...overrides,
  };
}

describe('coordinator metrics', () => {
  it('shows the leader\'s state as status does', async () => {
    const metrics = new CoordinatorMetrics(readings());
    const m = samples(await metrics.registry.metrics());
    expect(m.get('tidemark_leader')).toBe(1);
    expect(m.get('tidemark_protected_queues')).toBe(12);
    expect(m.get('tidemark_workers')).toBe(3);
    expect(m.get('tidemark_last_committed_epoch')).toBe(42);
    expect(m.get('tidemark_last_commit_timestamp_seconds')).toBe(1_700_000_000.5);
    expect(m.get('tidemark_coverage_gap_queues')).toBe(2);
    expect(m.get('tidemark_coverage_unchecked_queues')).toBe(4);
    expect(m.get('tidemark_incomplete_queues')).toBe(3);
    expect(m.get('tidemark_outside_cut_queues')).toBe(1);
    expect(m.get('tidemark_queue_outside_cut_since_timestamp_seconds{vhost="v1",queue="stuck"}')).toBe(1_700_000_100);
    expect(m.get('tidemark_unprotected_queues')).toBe(5);
    expect(m.get('tidemark_journal_bound_bytes')).toBe(64 * 1024 * 1024);
    expect(m.get('tidemark_journal_disk_pressure')).toBe(1);
    expect(m.get('tidemark_coverage_gap_messages{vhost="v1",queue="orders"}')).toBe(7);
    expect(m.get('tidemark_coverage_gap_messages{vhost="v1",queue="audit"}')).toBe(2);
    expect(m.get('tidemark_coverage_gap_path{vhost="v1",queue="orders",path="published past its bindings (to the default exchange?)"}')).toBe(1);
    expect(m.get('tidemark_checkpoint_interval_seconds')).toBe(60);
    expect(m.get('tidemark_last_checkpoint_messages')).toBe(900);
    expect(m.get('tidemark_last_checkpoint_body_bytes')).toBe(123_456);
    expect(m.get('process_cpu_seconds_total')).toBeGreaterThan(0);
  });

  it('counts restores by outcome and verifications with what they checked', async () => {
    const metrics = new CoordinatorMetrics(readings());
    let m = samples(await metrics.registry.metrics());
    expect(m.get('tidemark_restores_total{outcome="failed"}')).toBe(0);
    expect(m.get('tidemark_verifications_total{outcome="problems"}')).toBe(0);

    metrics.restoreFinished('done');
    metrics.restoreFinished('failed');
    metrics.restoreFinished('done');
    const done = { checkpoint: 7, full: true, manifests: 2, segments: 5, bytes: 4_096, records: 300, problems: 0, durationMs: 12, encrypted: false, plaintextManifests: 0, plaintextSegments: 0 };
    metrics.verified(done);
    metrics.verified({ ...done, problems: 2 });
    metrics.verified(undefined);
    m = samples(await metrics.registry.metrics());
    expect(m.get('tidemark_restores_total{outcome="done"}')).toBe(2);
    expect(m.get('tidemark_restores_total{outcome="failed"}')).toBe(1);
    expect(m.get('tidemark_restores_total{outcome="cancelled"}')).toBe(0);
    expect(m.get('tidemark_verifications_total{outcome="ok"}')).toBe(1);
    expect(m.get('tidemark_verifications_total{outcome="problems"}')).toBe(1);
    expect(m.get('tidemark_verifications_total{outcome="error"}')).toBe(1);
    expect(m.get('tidemark_verify_checked_bytes_total')).toBe(8_192);
    expect(m.get('tidemark_verify_checked_segments_total')).toBe(10);
    expect(m.get('tidemark_verify_checked_records_total')).toBe(600);
  });

  it('counts rounds and their durations by outcome, both outcomes present from the start', async () => {
    const metrics = new CoordinatorMetrics(readings());
    let m = samples(await metrics.registry.metrics());
    expect(m.get('tidemark_rounds_total{outcome="committed"}')).toBe(0);
    expect(m.get('tidemark_rounds_total{outcome="aborted"}')).toBe(0);

    metrics.roundFinished('committed', 300);
    metrics.roundFinished('committed', 4_000);
    metrics.roundFinished('aborted', 15_000);
    m = samples(await metrics.registry.metrics());
    expect(m.get('tidemark_rounds_total{outcome="committed"}')).toBe(2);
    expect(m.get('tidemark_rounds_total{outcome="aborted"}')).toBe(1);
    expect(m.get('tidemark_round_duration_seconds_count{outcome="committed"}')).toBe(2);
    expect(m.get('tidemark_round_duration_seconds_sum{outcome="committed"}')).toBe(4.3);
    expect(m.get('tidemark_round_duration_seconds_bucket{le="0.5",outcome="committed"}')).toBe(1);
    expect(m.get('tidemark_round_duration_seconds_bucket{le="5",outcome="committed"}')).toBe(2);
    expect(m.get('tidemark_round_duration_seconds_bucket{le="10",outcome="aborted"}')).toBe(0);
    expect(m.get('tidemark_round_duration_seconds_bucket{le="30",outcome="aborted"}')).toBe(1);
  });

  it('reports 0 and no gap series on a standby, and drops a gap once it closes', async () => {
    let leader = true;
    let gaps = [gap('orders', 7)];
    const metrics = new CoordinatorMetrics(readings({ leader: () => leader, coverageGaps: () => gaps }));
    expect(samples(await metrics.registry.metrics()).get('tidemark_coverage_gap_messages{vhost="v1",queue="orders"}')).toBe(7);

    gaps = [];
    let m = samples(await metrics.registry.metrics());
    expect([...m.keys()].filter((k) => k.startsWith('tidemark_coverage_gap_messages'))).toEqual([]);
    expect(m.get('tidemark_coverage_gap_queues')).toBe(0);

    leader = false;
    gaps = [gap('orders', 7)];
    m = samples(await metrics.registry.metrics());
    expect(m.get('tidemark_leader')).toBe(0);
    expect(m.get('tidemark_protected_queues')).toBe(0);
    expect(m.get('tidemark_last_committed_epoch')).toBe(0);
    expect(m.get('tidemark_coverage_gap_queues')).toBe(0);
    expect(m.get('tidemark_coverage_unchecked_queues')).toBe(0);
    expect([...m.keys()].filter((k) => k.startsWith('tidemark_coverage_gap_messages'))).toEqual([]);
    expect(m.get('tidemark_workers')).toBe(3);
  });

  it('keeps the last worker count when membership cannot be read, rather than failing the scrape', async () => {
    let workers = async () => 3;
    const metrics = new CoordinatorMetrics(readings({ workers: () => workers() }));
    await metrics.registry.metrics();
    workers = async () => {
      throw new Error('Redis down');
    };
    expect(samples(await metrics.registry.metrics()).get('tidemark_workers')).toBe(3);
  });

  it('keeps the numbers of two coordinators in one process apart', async () => {
    const a = new CoordinatorMetrics(readings());
    const b = new CoordinatorMetrics(readings({ leader: () => false }));
    a.roundFinished('committed', 100);
    expect(samples(await a.registry.metrics()).get('tidemark_rounds_total{outcome="committed"}')).toBe(1);
    expect(samples(await b.registry.metrics()).get('tidemark_rounds_total{outcome="committed"}')).toBe(0);
  });
});
