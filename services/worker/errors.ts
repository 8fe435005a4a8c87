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

/** PREPARE's deadline passed before the records below the fence were durable: the queue votes NO. */
export class PrepareTimeoutError extends TidemarkError {
  override name = 'PrepareTimeoutError';
}

/** An assignment named a queue without what capturing it needs; nothing of it was applied. */
export class InvalidAssignmentError extends TidemarkError {
  override name = 'InvalidAssignmentError';
}

/**
 * The target broker refused or could not take a restored queue (unreachable, the queue cannot be
 * declared or already holds messages, a message unroutable or nacked, fewer confirms than the
 * checkpoint holds). What it says names what was published.
 */
export class RestoreTargetError extends TidemarkError {
  override name = 'RestoreTargetError';
}

/** The checkpoint's data could not be read from the store to verify it before publishing; nothing was published. */
export class RestoreReadError extends TidemarkError {
  override name = 'RestoreReadError';
}

/** A resumed restore's recorded progress does not match the checkpoint's data; nothing more was published. */
export class RestoreProgressError extends TidemarkError {
  override name = 'RestoreProgressError';
}
