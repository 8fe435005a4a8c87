/**
 * The coordinator's Prometheus metrics (docs/OPERATIONS.md#metrics). Rounds are counted as they
 * finish; everything else is read from the coordinator when scraped, so a scrape shows the same
 * state `tidemark status` does. Each coordinator has its own registry (not prom-client's global
 * one), so several coordinators in one process (tests) keep their numbers apart.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { VerifyDone } from '../gen/tidemark/v1/admin.js';
import { gapPaths, type QueueCoverage } from './coverage.js';
import type { RoundResult } from './round-runner.js';

/** What the scrape reads from the coordinator. Leader-only values are read on the leader alone. */
export interface CoordinatorReadings {
  leader(): boolean;
  protectedQueues(): number;
  /** Live workers in membership; may fail (Redis down), which leaves the previous value. */
  workers(): Promise<number>;
  /** The newest checkpoint this leader knows committed; undefined before it knows one. */
  lastCommit(): { epoch: number; committedAtMs: number; messages?: number; bodyBytes?: number } | undefined;
  /** The scheduled round interval in ms (0: rounds only on demand). */
  intervalMs(): number;
  coverageGaps(): QueueCoverage[];
  coverageUnchecked(): number;
  /** Queues the newest checkpoint this leader committed marks as possibly incomplete. */
  incompleteQueues(): number;
  /** Queues the newest committed checkpoint this leader knows carries from older cuts (G8). */
  outsideCut(): Array<{ vhost: string; queue: string; sinceMs: number }>;
  /** Selected queues the broker resource guard gave no journal (no room on the broker). */
  unprotectedQueues(): number;
  /** Bytes each journal keeps at most (journal retention); 0 before it is known. */
  journalBoundBytes(): number;
  /** Whether the broker's disk is under pressure (journals shrunk, then shed). */
  journalPressure(): boolean;
}

/** Round durations from tens of milliseconds (a few queues) to a minute (thousands, slow store). */
const ROUND_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** How a restore job ended (restore-job.ts RestoreState, but for `running`). */
const RESTORE_OUTCOMES = ['done', 'failed', 'cancelled', 'interrupted'] as const;

export class CoordinatorMetrics {
  readonly registry = new Registry();
  private readonly rounds: Counter<'outcome'>;
  private readonly roundSeconds: Histogram<'outcome'>;
  private readonly restores: Counter<'outcome'>;
  private readonly verifications: Counter<'outcome'>;
  private readonly verifiedBytes: Counter;
  private readonly verifiedSegments: Counter;
  private readonly verifiedRecords: Counter;

  constructor(read: CoordinatorReadings) {
    const registers = [this.registry];
    // Process metrics under their usual names (process_*, nodejs_*), as every Node service exports them.
    collectDefaultMetrics({ register: this.registry });
    // A standby reports 0 for what only the leader knows: max() across coordinators is the leader's value.
    const leaderOnly = (value: () => number) => () => (read.leader() ? value() : 0);
    const gauge = (name: string, help: string, value: () => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(value());
        },
      });

    gauge('tidemark_leader', '1 when this coordinator holds the leader lease and leads, else 0.', () => (read.leader() ? 1 : 0));
    this.rounds = new Counter({
      name: 'tidemark_rounds_total',
      help: 'Checkpoint rounds this coordinator ran, by outcome (committed, aborted, in-doubt).',
      labelNames: ['outcome'],
      registers,
    });
    this.roundSeconds = new Histogram({
      name: 'tidemark_round_duration_seconds',
      help: 'Duration of this coordinator\'s checkpoint rounds, from start to outcome, by outcome.',
      labelNames: ['outcome'],
      buckets: ROUND_BUCKETS,
      registers,
    });
    for (const outcome of ['committed', 'aborted'] as const) {
      this.rounds.inc({ outcome }, 0);
      this.roundSeconds.zero({ outcome });
    }
    gauge('tidemark_last_committed_epoch', 'Epoch of the newest committed checkpoint (0 on a standby, or before any).', leaderOnly(() => read.lastCommit()?.epoch ?? 0));
    gauge(
      'tidemark_last_commit_timestamp_seconds',
      'Commit time of the newest committed checkpoint, in Unix seconds (0 on a standby, or before any).',
      leaderOnly(() => (read.lastCommit()?.committedAtMs ?? 0) / 1000),
    );
    gauge(
      'tidemark_checkpoint_interval_seconds',
      'The scheduled checkpoint interval (TIDEMARK_INTERVAL), 0 when rounds run only on demand: alerts compare the last commit\'s age with it.',
      () => read.intervalMs() / 1000,
    );
    gauge('tidemark_last_checkpoint_messages', 'Messages the newest committed checkpoint holds over all its queues (0 on a standby, or before any).', leaderOnly(() => read.lastCommit()?.messages ?? 0));
    gauge(
      'tidemark_last_checkpoint_body_bytes',
      'Message body bytes the newest committed checkpoint holds over all its queues: what a restore of it publishes (0 on a standby, or before any).',
      leaderOnly(() => read.lastCommit()?.bodyBytes ?? 0),
    );
    this.restores = new Counter({ name: 'tidemark_restores_total', help: 'Restores this coordinator ran to an end, by outcome (done, failed, cancelled, interrupted).', labelNames: ['outcome'], registers });
    for (const outcome of RESTORE_OUTCOMES) this.restores.inc({ outcome }, 0);
    this.verifications = new Counter({
      name: 'tidemark_verifications_total',
      help: 'Checkpoint verifications (tidemark verify) this coordinator ran, by outcome: ok, problems (found damage), error (could not run).',
      labelNames: ['outcome'],
      registers,
    });
    for (const outcome of ['ok', 'problems', 'error']) this.verifications.inc({ outcome }, 0);
    this.verifiedBytes = new Counter({ name: 'tidemark_verify_checked_bytes_total', help: 'Stored bytes of the segments verifications read and checked.', registers });
    this.verifiedSegments = new Counter({ name: 'tidemark_verify_checked_segments_total', help: 'Segments verifications read and checked.', registers });
    this.verifiedRecords = new Counter({ name: 'tidemark_verify_checked_records_total', help: 'Records full verifications (--full) decoded and checked.', registers });
    gauge('tidemark_protected_queues', 'Queues the leader protects (0 on a standby).', leaderOnly(() => read.protectedQueues()));
    new Gauge({
      name: 'tidemark_workers',
      help: 'Live workers in membership.',
      registers,
      async collect() {
        const workers = await read.workers().catch(() => undefined);
        if (workers !== undefined) this.set(workers);
      },
    });
    gauge(
      'tidemark_coverage_gap_queues',
      'Protected queues with a coverage gap: messages their journal did not receive, counted or shown by the topology (0 on a standby).',
      leaderOnly(() => read.coverageGaps().length),
    );
    gauge(
      'tidemark_coverage_unchecked_queues',
      'Protected queues whose coverage is not known yet: not idle long enough since the leader began watching them for a baseline (0 on a standby).',
      leaderOnly(() => read.coverageUnchecked()),
    );
    gauge(
      'tidemark_incomplete_queues',
      'Queues the newest committed checkpoint marks as possibly incomplete: their journals may lack messages the broker confirmed, e.g. around a broker restart (0 on a standby).',
      leaderOnly(() => read.incompleteQueues()),
    );
    gauge(
      'tidemark_outside_cut_queues',
      'Queues outside the newest committed checkpoint\'s cut: they could not take part in its round (capture failed, worker unreachable), so it carries them from an older cut (0 on a standby).',
      leaderOnly(() => read.outsideCut().length),
    );
    new Gauge({
      name: 'tidemark_queue_outside_cut_since_timestamp_seconds',
      help: 'For each queue outside the newest committed checkpoint\'s cut: since when it could not take part, in Unix seconds (time() minus it is how far its recovery point lags).',
      labelNames: ['vhost', 'queue'],
      registers,
      collect() {
        // Rebuilt on every scrape: a queue back inside the cut (or a standby) has no series.
        this.reset();
        if (!read.leader()) return;
        for (const q of read.outsideCut()) this.set({ vhost: q.vhost, queue: q.queue }, q.sinceMs / 1000);
      },
    });
    gauge(
      'tidemark_journal_bound_bytes',
      'Bytes each journal keeps at most: the journal retention policy the leader sized from the broker\'s free disk (0 on a standby and before the leader read the disk).',
      leaderOnly(() => read.journalBoundBytes()),
    );
    gauge(
      'tidemark_journal_disk_pressure',
      '1 while a broker node\'s free disk is within half of guardDiskMargin of its disk_free_limit, or its disk alarm is up: journals are at their smallest bound and the largest are shed (0 on a standby).',
      leaderOnly(() => (read.journalPressure() ? 1 : 0)),
    );
    gauge(
      'tidemark_unprotected_queues',
      'Queues TIDEMARK_PROTECT selects that have no journal, and so no checkpoints, because the broker resource guard found no room on the broker (0 on a standby).',
      leaderOnly(() => read.unprotectedQueues()),
    );
    new Gauge({
      name: 'tidemark_coverage_gap_messages',
      help: 'Messages counted into a protected queue since its coverage baseline that its journal did not receive (sent to the default exchange, dead-lettered); only queues with a gap, 0 for a path no message was counted on yet.',
      labelNames: ['vhost', 'queue'],
      registers,
      collect() {
        // Rebuilt on every scrape: a queue whose gap closed (or a standby) has no series.
        this.reset();
        if (!read.leader()) return;
        for (const gap of read.coverageGaps()) this.set({ vhost: gap.vhost, queue: gap.queue }, gap.uncaptured);
      },
    });
    new Gauge({
      name: 'tidemark_coverage_gap_path',
      help: 'How messages get past the journal of a protected queue with a coverage gap (the REASON of status, without counts): 1 per path.',
      labelNames: ['vhost', 'queue', 'path'],
      registers,
      collect() {
        this.reset();
        if (!read.leader()) return;
        for (const gap of read.coverageGaps()) for (const path of gapPaths(gap)) this.set({ vhost: gap.vhost, queue: gap.queue, path }, 1);
      },
    });
  }

  /** Counts a restore job that ended (restore-job.ts). */
  restoreFinished(outcome: (typeof RESTORE_OUTCOMES)[number]): void {
    this.restores.inc({ outcome });
  }

  /** Counts a verification: its done event, or undefined when it could not run. */
  verified(done: VerifyDone | undefined): void {
    if (!done) {
      this.verifications.inc({ outcome: 'error' });
      return;
    }
    this.verifications.inc({ outcome: done.problems > 0 ? 'problems' : 'ok' });
    this.verifiedBytes.inc(done.bytes);
    this.verifiedSegments.inc(done.segments);
    this.verifiedRecords.inc(done.records);
  }

  /** Counts a round that ran to an outcome (committed, aborted or in doubt). */
  roundFinished(outcome: RoundResult['outcome'], durationMs: number): void {
    this.rounds.inc({ outcome });
    this.roundSeconds.observe({ outcome }, durationMs / 1000);
  }
}
