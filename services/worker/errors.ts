/**
 * The worker's own errors; those every service shares are core's (services/core/errors.ts).
 * None is retryable as such: a failed capture votes NO until it is attached again.
 */
import { TidemarkError } from '../core/index.js';

/** Thrown when the journal cannot give a gap-free history; the queue votes NO until reassigned. */
export class JournalGapError extends TidemarkError {
  override name = 'JournalGapError';
}

/** A capture cannot reach or read its journal (connection or channel lost); it votes NO until attached again. */
export class JournalReadError extends TidemarkError {
  override name = 'JournalReadError';
}

/** PREPARE's deadline passed before the round's fence reached a journal: the queue votes NO. */
export class FenceNotSeenError extends TidemarkError {
  override name = 'FenceNotSeenError';
  constructor(
    readonly epoch: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
