/**
 * Retry with exponential backoff: the one helper every "try again a little later" in Tidemark
 * uses (manifest writes, PREPARE and decision calls, opening the store).
 */
import { setTimeout as sleep } from 'node:timers/promises';

export interface RetryOptions {
  /** First delay; each next one doubles, up to `maxDelayMs`. */
  initialDelayMs: number;
  maxDelayMs: number;
  /** Most tries in all (the first included); unbounded when absent. */
  attempts?: number;
  /**
   * Whether `err` (from try `attempt`, 1-based) is worth another try after `delayMs`; the error is
   * thrown as it is when not. @default always
   */
  retryable?: (err: unknown, attempt: number, delayMs: number) => boolean;
  /** Called before each wait, e.g. to log. */
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  /** Aborts the wait between tries: the abort's reason is thrown. */
  signal?: AbortSignal;
}

/** The delay before try `attempt + 1`: initial × 2^(attempt-1), capped. */
export function backoffDelay(attempt: number, initialDelayMs: number, maxDelayMs: number): number {
  return Math.min(maxDelayMs, initialDelayMs * 2 ** Math.max(0, attempt - 1));
}

/** Calls `fn` until it resolves, a failure is not retryable, or the tries run out (the last error is thrown). */
export async function retry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await fn(attempt);
    } catch (err) {
      const delayMs = backoffDelay(attempt, options.initialDelayMs, options.maxDelayMs);
      const more = options.attempts === undefined || attempt < options.attempts;
      if (!more || options.signal?.aborted || !(options.retryable?.(err, attempt, delayMs) ?? true)) throw err;
      options.onRetry?.(err, attempt, delayMs);
      try {
        await sleep(delayMs, undefined, { signal: options.signal });
      } catch {
        throw options.signal?.reason ?? err;
      }
    }
  }
}
