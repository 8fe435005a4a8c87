/**
 * How long a restore will take, before it starts: a pure estimate from the queues' message counts
 * and the publish rates, so the CLI can show it and a test can pin it without a broker.
 */
import { ConfigError } from '../core/index.js';

/**
 * Messages per second one queue's publisher (one confirm channel, in journal order) achieves.
 * An assumption, used until a restore has been measured on this cluster: then the measured rate
 * should be passed instead.
 */
export const DEFAULT_QUEUE_RATE = 5000;

/** One queue to restore, as the checkpoint records it. */
export interface EstimatedQueue {
  messages: number;
  /** Not used yet: publishing is measured in messages per second. */
  bodyBytes: number;
}

/** The rates and parallelism a restore runs with. */
export interface RestoreEstimateOptions {
  /** Queues restored at the same time. Values below 1 count as 1. */
  concurrency: number;
  /** Messages per second over the whole restore; 0 for no limit. */
  rateLimit: number;
  /** Messages per second one queue's publisher achieves, e.g. {@link DEFAULT_QUEUE_RATE}. */
  perQueueRate: number;
}

/**
 * The estimated duration of a restore in milliseconds, rounded up; 0 when there is nothing to
 * publish.
 *
 * Queues are scheduled largest first onto `concurrency` slots, each to the slot that frees first
 * (as the worker's pool takes the next queue when one finishes). A queue publishes at
 * `perQueueRate`, or at its share of `rateLimit` when that is lower: the limit is split evenly
 * between the queues running at once, which are at most `concurrency` and at most the number of
 * queues that have messages. The result is the time the last slot finishes.
 */
export function estimateRestoreMs(queues: EstimatedQueue[], options: RestoreEstimateOptions): number {
  const { rateLimit, perQueueRate } = options;
  if (!(perQueueRate > 0)) throw new ConfigError(`the per-queue publish rate must be above 0 messages/s, got ${perQueueRate}`);
  if (!(rateLimit >= 0)) throw new ConfigError(`the restore rate limit must be 0 (none) or above, got ${rateLimit}`);
  const sizes = queues.map((q) => q.messages).filter((m) => m > 0);
  if (sizes.length === 0) return 0;
  const slots = Math.max(1, Math.floor(options.concurrency) || 1);
  const running = Math.min(slots, sizes.length);
  const rate = rateLimit > 0 ? Math.min(perQueueRate, rateLimit / running) : perQueueRate;

  // Every queue publishes at the same rate, so the largest in messages is also the longest.
  sizes.sort((a, b) => b - a);
  const finishMs = new Array<number>(running).fill(0);
  for (const messages of sizes) {
    let first = 0;
    for (let i = 1; i < finishMs.length; i += 1) if (finishMs[i] < finishMs[first]) first = i;
    finishMs[first] += (messages * 1000) / rate;
  }
  // Floating point leaves e.g. 3000.0000000000005 for an exact 3000: do not round that up.
  return Math.ceil(finishMs.reduce((a, b) => Math.max(a, b)) - 1e-6);
}
