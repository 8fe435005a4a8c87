/**
 * Coverage: does each journal receive everything its source queue does? A journal is bound like
 * its queue, so it misses exactly the messages bindings cannot route to it, above all publishes
 * to the default exchange (routing key = queue name), which go straight to the queue. Nothing may
 * be missed silently, so the leader compares, on every discovery pass, the broker's publish
 * counter of each protected queue with what capture has read of its journal.
 *
 * The two counters start at different times (the queue may have had traffic before it was
 * protected), so what is compared is their difference d = published - captured, against a
 * baseline d0. Both sides lag: the broker's statistics by up to its collection interval (5 s by
 * default), capture by its read position. A baseline taken under traffic would carry that lag
 * forever, so it is taken only when the queue is idle: both counters unchanged for `settleMs`
 * (longer than the statistics interval). A later idle moment with a smaller d lowers it.
 *
 *   uncaptured = d - d0
 *
 * is reported once it was positive on two passes in a row without shrinking (a gap that shrinks
 * is capture catching up, e.g. a new owner re-reading after a handoff). A queue that has never
 * been idle since the leader began watching has no baseline yet and reports nothing.
 */
import type { ManagementClient } from '../core/amqp/management-client.js';
import type { WorkerClient } from '../client/worker-client.js';
import type { ProtectedQueue } from './discovery.js';

export interface CoverageSample {
  vhost: string;
  queue: string;
  /** The broker's `message_stats.publish` of the source queue; undefined if it reports none (no publishes). */
  published: number | undefined;
  /** Data messages capture has read of the journal (from the queue's start offset); undefined if unknown. */
  captured: number | undefined;
}

export interface QueueCoverage {
  vhost: string;
  queue: string;
  /** Publishes into the queue since the baseline, and what its journal received of them. */
  sourcePublished: number;
  captured: number;
  uncaptured: number;
  /** When the baseline was taken. */
  sinceMs: number;
}

interface Tracked {
  last: { published: number; captured: number };
  /** Since when `last` has not changed. */
  unchangedSinceMs: number;
  base?: { published: number; captured: number; atMs: number };
  /** uncaptured at the last two passes, oldest first. */
  gaps: number[];
}

/** Longer than RabbitMQ's default statistics interval (5 s), so idle counters are settled. */
export const COVERAGE_SETTLE_MS = 12_000;

export class CoverageTracker {
  private readonly queues = new Map<string, Tracked>();
  /** Queues of the last pass, sampled or not; undefined before the first pass. */
  private lastPass: string[] | undefined;

  constructor(private readonly settleMs = COVERAGE_SETTLE_MS) {}

  /** Takes one pass's samples; queues not sampled any more are forgotten. */
  observe(samples: CoverageSample[], nowMs = Date.now()): void {
    const seen = new Set<string>();
    for (const s of samples) {
      const id = `${s.vhost}\u0000${s.queue}`;
      seen.add(id);
      if (s.captured === undefined) continue;
      const sample = { published: s.published ?? 0, captured: s.captured };
      let t = this.queues.get(id);
      if (!t || sample.published < t.last.published) {
        // New, or the broker's counter went back (node restart, queue re-created): start over.
        this.queues.set(id, { last: sample, unchangedSinceMs: nowMs, gaps: [] });
        continue;
      }
      const changed = sample.published !== t.last.published || sample.captured !== t.last.captured;
      const recaptured = sample.captured < t.last.captured;
      if (changed) t.unchangedSinceMs = nowMs;
      t.last = sample;
      const d = sample.published - sample.captured;
      if (nowMs - t.unchangedSinceMs >= this.settleMs && (!t.base || d < t.base.published - t.base.captured)) {
        t.base = { ...sample, atMs: nowMs };
      }
      if (!t.base) continue;
      const gap = d - (t.base.published - t.base.captured);
      t.gaps = recaptured ? [] : [...t.gaps, gap].slice(-2);
    }
    for (const id of this.queues.keys()) if (!seen.has(id)) this.queues.delete(id);
    this.lastPass = [...seen];
  }

  /**
   * Queues of the last pass that have no baseline yet, so a gap in them could not be seen
   * (undefined before the first pass). Shown so that "no gaps" is never mistaken for "checked".
   */
  unchecked(): number | undefined {
    return this.lastPass?.filter((id) => !this.queues.get(id)?.base).length;
  }

  /** Queues with a gap on the last two passes. */
  gaps(): QueueCoverage[] {
    const out: QueueCoverage[] = [];
    for (const [id, t] of this.queues) {
      if (!t.base || t.gaps.length < 2 || t.gaps[0] <= 0 || t.gaps[1] < t.gaps[0]) continue;
      const [vhost, queue] = id.split('\u0000');
      out.push({
        vhost,
        queue,
        sourcePublished: t.last.published - t.base.published,
        captured: t.last.captured - t.base.captured,
        uncaptured: t.gaps[1],
        sinceMs: t.base.atMs,
      });
    }
    return out.sort((a, b) => a.vhost.localeCompare(b.vhost) || a.queue.localeCompare(b.queue));
  }
}

/**
 * One pass's samples: the broker's publish counters of the protected queues (one listing per
 * vhost) and capture's counts from every worker. A worker that does not answer leaves its queues
 * without a capture count this pass.
 */
export async function sampleCoverage(
  management: Pick<ManagementClient, 'queuePublishCounts'>,
  queues: ProtectedQueue[],
  workers: Iterable<Pick<WorkerClient, 'status'>>,
  deadlineMs: number,
): Promise<CoverageSample[]> {
  const vhosts = [...new Set(queues.map((q) => q.definition.vhost))];
  const [published, statuses] = await Promise.all([
    Promise.all(vhosts.map(async (vhost) => [vhost, await management.queuePublishCounts(vhost)] as const)),
    Promise.all([...workers].map((w) => w.status(deadlineMs).catch(() => undefined))),
  ]);
  const publishedBy = new Map(published);
  const captured = new Map<string, number>();
  for (const status of statuses) {
    for (const q of status?.queues ?? []) if (q.error === '') captured.set(`${q.vhost}\u0000${q.queue}`, q.messages);
  }
  return queues.map(({ definition: { vhost, name } }) => ({
    vhost,
    queue: name,
    published: publishedBy.get(vhost)?.get(name),
    captured: captured.get(`${vhost}\u0000${name}`),
  }));
}
