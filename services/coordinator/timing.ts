/**
 * The coordinator's timings and retry backoffs, in one place so the simulation (test/sim) runs
 * with the very same ones instead of copies. Pure: no timers here; the waits themselves are
 * core/infrastructure/retry.ts.
 */
import { backoffDelay } from '../core/index.js';

/** The leader lease is acquired or renewed every third of the lease time (at least 200 ms). */
export function leaseTickMs(leaseMs: number): number {
  return Math.max(200, Math.floor(leaseMs / 3));
}

/** The leader's scheduled work (re-sends, recovery of an in-doubt round, discovery, due rounds) runs every second... */
export const SCHEDULER_TICK_MAX_MS = 1_000;

/** ...and at least once per discovery interval. */
export function schedulerTickMs(discoveryIntervalMs: number): number {
  return Math.min(discoveryIntervalMs, SCHEDULER_TICK_MAX_MS);
}

/** A round's own deadline is its PREPARE deadline plus this. */
export const ROUND_DEADLINE_EXTRA_MS = 1_000;

/** A PREPARE lost to a transient fault is retried after this, doubling (`nextPrepareRetryMs`) while time is left. */
export const PREPARE_BACKOFF = { initialDelayMs: 100, maxDelayMs: 2_000 };

export const PREPARE_RETRY_FIRST_MS = PREPARE_BACKOFF.initialDelayMs;

export function nextPrepareRetryMs(delayMs: number): number {
  return Math.min(delayMs * 2, PREPARE_BACKOFF.maxDelayMs);
}

/** A transient PREPARE failure is retried only if the retry, after `delayMs`, starts before the deadline. */
export function prepareRetryFits(nowMs: number, delayMs: number, deadlineMs: number): boolean {
  return nowMs + delayMs < deadlineMs;
}

/** A manifest write that failed is retried after this, doubling (`nextManifestRetryMs`) while leading. */
export const MANIFEST_BACKOFF = { initialDelayMs: 200, maxDelayMs: 5_000 };

export const MANIFEST_RETRY_FIRST_MS = MANIFEST_BACKOFF.initialDelayMs;

export function nextManifestRetryMs(delayMs: number): number {
  return Math.min(delayMs * 2, MANIFEST_BACKOFF.maxDelayMs);
}

/** Tries of a round's DECIDE to each worker; what still fails goes to the leader's re-send queue. */
export const DECIDE_ATTEMPTS = 3;

/** Tries of each queued DECIDE per scheduler tick. */
export const REDELIVER_ATTEMPTS = 1;

/** Deadline of one DECIDE call. */
export const DECIDE_DEADLINE_MS = 5_000;

export const DECIDE_BACKOFF = { initialDelayMs: 200, maxDelayMs: 5_000 };

/** The wait after DECIDE attempt `attempt` (1-based) failed. */
export function decideRetryDelayMs(attempt: number): number {
  return backoffDelay(attempt, DECIDE_BACKOFF.initialDelayMs, DECIDE_BACKOFF.maxDelayMs);
}
