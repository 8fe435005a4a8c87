/**
 * Coverage: does each journal receive everything its source queue does? A journal is bound like
 * its queue, so it misses exactly the messages bindings cannot route to it: publishes to the
 * default exchange (routing key = queue name), which go straight to the queue, and messages that
 * enter without a publish, by dead-lettering. Nothing may be missed silently, so the leader
 * checks every protected queue on every discovery pass in three ways, each reported as a gap with
 * its reason (docs/OPERATIONS.md#coverage has the table of entry paths):
 *
 * 1. Topology (entry-paths.ts): a queue whose dead-letter exchange routes to the protected queue,
 *    or a federation policy on it. Reported at once, from the pass that sees it.
 * 2. Publishes: the broker's publish counter of the queue against what capture has read of its
 *    journal, d = published - captured.
 * 3. Arrivals without a publish: the broker counts a dead-lettered message in the queue's depth
 *    and, once consumed, in its ack (or no-ack) counters, but not in `publish` (3.10.8). So
 *    x = messages + consumed - published only grows by what entered without a publish; what left
 *    without being consumed (expired, dropped by overflow, rejected, purged, dead-lettered on)
 *    only lowers it. Its growth is a lower bound of the uncaptured arrivals, and never more.
 *
 * The counters start at different times (the queue may have had traffic before it was protected),
 * so what is compared is a difference against a baseline. All sides lag: the broker's statistics
 * by up to its collection interval (5 s by default), each from its own process (the queue's depth,
 * each channel's publish and ack counts), and capture by its read position. A baseline taken under
 * traffic would carry that lag forever, so it is taken only when the queue is idle: its counters
 * unchanged for `settleMs` (longer than the statistics interval). A later idle moment with a
 * smaller difference lowers it.
 *
 *   uncaptured publishes = d - d0
 *
 * is reported once it was positive on two passes in a row without shrinking (a gap that shrinks
 * is capture catching up, e.g. a new owner re-reading after a handoff). Arrivals x - x0 are only
 * read while the queue is idle, as their lag under traffic could go either way; the last idle
 * reading stands until the next. A queue that has never been idle since the leader began watching
 * has no baseline yet and reports nothing from its counters (its topology still counts).
 *
 * observeCoverage is one pass's check: it samples, feeds the leader's CoverageTracker, and logs a
 * gap when its entry paths are new, not again as its counts grow.
 */
import { type Clock, type Logger, queueKey, splitQueueKey, systemClock, type WorkerClient } from '../core/index.js';
import type { ManagementClient } from '../core/amqp/index.js';
import type { ProtectedQueue } from './discovery.js';

export interface CoverageSample {
  vhost: string;
  queue: string;
  /** The broker's `message_stats.publish` of the source queue; undefined if it reports none (no publishes). */
  published: number | undefined;
  /** Data messages capture has read of the journal (from the queue's start offset); undefined if unknown. */
  captured: number | undefined;
  /** The broker's depth of the source queue; undefined if it reports none yet. */
  messages?: number;
  /** The broker's `ack` + `deliver_no_ack` + `get_no_ack` of the source queue; with `messages`. */
  consumed?: number;
  /** Entry paths the topology shows its journal cannot see (entry-paths.ts), as gap reasons. */
  paths?: string[];
}

export interface QueueCoverage {
  vhost: string;
  queue: string;
  /** Publishes into the queue since the baseline, and what its journal received of them. */
  sourcePublished: number;
  captured: number;
  /**
   * Messages counted into the queue since the baseline that no checkpoint holds: publishes past
   * its journal, and (a lower bound) arrivals without a publish. 0 for a gap the topology shows
   * before any such message was counted.
   */
  uncaptured: number;
  /** When the baseline was taken (0 if there is none yet). */
  sinceMs: number;
  /** How messages got past the journal, `; `-separated (e.g. "fed by dead-lettering from q"). */
  reason: string;
}

interface Tracked {
  last: { published: number; captured: number };
  /** Since when `last` has not changed. */
  unchangedSinceMs: number;
  base?: { published: number; captured: number; atMs: number };
  /** uncaptured at the last two passes, oldest first. */
  gaps: number[];
}

/** Arrivals without a publish (see the header): x = messages + consumed - published. */
interface Arrivals {
  last: { published: number; messages: number; consumed: number };
  unchangedSinceMs: number;
  base?: { x: number; atMs: number };
  /** x - base at the last idle pass. */
  counted: number;
}

/** A gap's reasons without their counts (`reason` split at `; `): stable labels for logs and metrics. */
export function gapPaths(gap: Pick<QueueCoverage, 'reason'>): string[] {
  return gap.reason === '' ? [] : gap.reason.split('; ').map((r) => r.replace(/^\d+ /, ''));
}

/** Longer than RabbitMQ's default statistics interval (5 s), so idle counters are settled. */
export const COVERAGE_SETTLE_MS = 12_000;

export class CoverageTracker {
  private readonly queues = new Map<string, Tracked>();
  private readonly arrivals = new Map<string, Arrivals>();
  private readonly paths = new Map<string, string[]>();
  /** Queues of the last pass, sampled or not; undefined before the first pass. */
  private lastPass: string[] | undefined;

  constructor(
    readonly settleMs = COVERAGE_SETTLE_MS,
    /** When counters have been still for long enough. */
    private readonly clock: Clock = systemClock,
  ) {}

  /** Takes one pass's samples; queues not sampled any more are forgotten. */
  observe(samples: CoverageSample[], nowMs = this.clock.now()): void {
    const seen = new Set<string>();
    for (const s of samples) {
      const id = queueKey(s.vhost, s.queue);
      seen.add(id);
      if (s.paths && s.paths.length > 0) this.paths.set(id, s.paths);
      else this.paths.delete(id);
      this.observeArrivals(id, s, nowMs);
      this.observePublishes(id, s, nowMs);
    }
    for (const map of [this.queues, this.arrivals, this.paths]) {
      for (const id of map.keys()) if (!seen.has(id)) map.delete(id);
    }
    this.lastPass = [...seen];
  }

  private observePublishes(id: string, s: CoverageSample, nowMs: number): void {
    if (s.captured === undefined) return;
    const sample = { published: s.published ?? 0, captured: s.captured };
    const t = this.queues.get(id);
    if (!t || sample.published < t.last.published) {
      // New, or the broker's counter went back (node restart, queue re-created): start over.
      this.queues.set(id, { last: sample, unchangedSinceMs: nowMs, gaps: [] });
      return;
    }
    const changed = sample.published !== t.last.published || sample.captured !== t.last.captured;
    const recaptured = sample.captured < t.last.captured;
    if (changed) t.unchangedSinceMs = nowMs;
    t.last = sample;
    const d = sample.published - sample.captured;
    if (nowMs - t.unchangedSinceMs >= this.settleMs && (!t.base || d < t.base.published - t.base.captured)) {
      t.base = { ...sample, atMs: nowMs };
    }
    if (!t.base) return;
    const gap = d - (t.base.published - t.base.captured);
    t.gaps = recaptured ? [] : [...t.gaps, gap].slice(-2);
  }

  private observeArrivals(id: string, s: CoverageSample, nowMs: number): void {
    if (s.messages === undefined || s.consumed === undefined) return;
    const sample = { published: s.published ?? 0, messages: s.messages, consumed: s.consumed };
    const a = this.arrivals.get(id);
    if (!a || sample.published < a.last.published || sample.consumed < a.last.consumed) {
      this.arrivals.set(id, { last: sample, unchangedSinceMs: nowMs, counted: 0 });
      return;
    }
    const changed = sample.published !== a.last.published || sample.messages !== a.last.messages || sample.consumed !== a.last.consumed;
    if (changed) a.unchangedSinceMs = nowMs;
    a.last = sample;
    // Only idle readings: under traffic the depth and the channels' counters are not one snapshot.
    if (nowMs - a.unchangedSinceMs < this.settleMs) return;
    const x = sample.messages + sample.consumed - sample.published;
    if (!a.base || x < a.base.x) a.base = { x, atMs: nowMs };
    a.counted = x - a.base.x;
  }

  /**
   * Queues of the last pass that have no baseline yet, so a gap in them could not be seen
   * (undefined before the first pass). Shown so that "no gaps" is never mistaken for "checked".
   */
  unchecked(): number | undefined {
    return this.lastPass?.filter((id) => !this.queues.get(id)?.base).length;
  }

  /** Queues with a gap: publishes past the journal on the last two passes, counted arrivals without a publish, or a path in the topology. */
  gaps(): QueueCoverage[] {
    const out: QueueCoverage[] = [];
    for (const id of new Set([...this.queues.keys(), ...this.arrivals.keys(), ...this.paths.keys()])) {
      const t = this.queues.get(id);
      const published = t?.base && t.gaps.length === 2 && t.gaps[0] > 0 && t.gaps[1] >= t.gaps[0] ? t.gaps[1] : 0;
      const arrived = this.arrivals.get(id)?.counted ?? 0;
      const paths = this.paths.get(id) ?? [];
      if (published <= 0 && arrived <= 0 && paths.length === 0) continue;
      const reasons = [
        ...(published > 0 ? [`${published} published past its bindings (to the default exchange?)`] : []),
        ...(arrived > 0 ? [`${arrived} entered without a publish (dead-lettered?)`] : []),
        ...paths,
      ];
      const { vhost, queue } = splitQueueKey(id);
      out.push({
        vhost,
        queue,
        sourcePublished: t?.base ? t.last.published - t.base.published : 0,
        captured: t?.base ? t.last.captured - t.base.captured : 0,
        uncaptured: published + arrived,
        sinceMs: t?.base?.atMs ?? this.arrivals.get(id)?.base?.atMs ?? 0,
        reason: reasons.join('; '),
      });
    }
    return out.sort((a, b) => a.vhost.localeCompare(b.vhost) || a.queue.localeCompare(b.queue));
  }
}

/**
 * One pass's samples: the broker's counters of the protected queues (one listing per vhost),
 * capture's counts from every worker, and the uncapturable entry paths discovery found (by
 * queueKey). A worker that does not answer leaves its queues without a capture count this pass.
 */
export async function sampleCoverage(
  management: Pick<ManagementClient, 'queueCounts'>,
  queues: ProtectedQueue[],
  workers: Iterable<Pick<WorkerClient, 'status'>>,
  deadlineMs: number,
  paths: ReadonlyMap<string, string[]> = new Map(),
): Promise<CoverageSample[]> {
  const vhosts = [...new Set(queues.map((q) => q.definition.vhost))];
  const [counts, statuses] = await Promise.all([
    Promise.all(vhosts.map(async (vhost) => [vhost, await management.queueCounts(vhost)] as const)),
    Promise.all([...workers].map((w) => w.status(deadlineMs).catch(() => undefined))),
  ]);
  const countsBy = new Map(counts);
  const captured = new Map<string, number>();
  for (const status of statuses) {
    for (const q of status?.queues ?? []) if (q.error === '') captured.set(queueKey(q.vhost, q.queue), q.messages);
  }
  return queues.map(({ definition: { vhost, name } }) => {
    const broker = countsBy.get(vhost)?.get(name);
    return {
      vhost,
      queue: name,
      // A queue with no publishes yet has none in its statistics: 0, once the broker reports it.
      published: broker?.published,
      captured: captured.get(queueKey(vhost, name)),
      messages: broker?.messages,
      consumed: broker?.consumed,
      paths: paths.get(queueKey(vhost, name)) ?? [],
    };
  });
}

/**
 * One pass's coverage check: samples every protected queue that still exists, and logs each gap
 * whose paths changed (a new one, or messages counted on a known one), not as its counts grow.
 */
export async function observeCoverage(
  tracker: CoverageTracker,
  management: Pick<ManagementClient, 'queueCounts'>,
  queues: Iterable<ProtectedQueue>,
  workers: Iterable<Pick<WorkerClient, 'status'>>,
  deadlineMs: number,
  paths: ReadonlyMap<string, string[]>,
  log: Logger,
): Promise<void> {
  const samples = await sampleCoverage(management, [...queues].filter((q) => !q.deleted), workers, deadlineMs, paths);
  const known = new Map(tracker.gaps().map((g) => [`${g.vhost}/${g.queue}`, gapPaths(g).join('; ')]));
  tracker.observe(samples);
  for (const gap of tracker.gaps()) {
    if (known.get(`${gap.vhost}/${gap.queue}`) === gapPaths(gap).join('; ')) continue;
    log.warn('coverage gap: a queue receives messages its journal does not; checkpoints do not hold them. See "tidemark status" and docs/OPERATIONS.md#coverage', {
      vhost: gap.vhost,
      queue: gap.queue,
      reason: gap.reason,
      uncaptured: gap.uncaptured,
    });
  }
}
