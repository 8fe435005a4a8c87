/**
 * Errors shared by every Tidemark service. Each says what happened, what was kept safe, and what
 * to do next; `retryable` tells callers whether trying again can help.
 */

export class TidemarkError extends Error {
  override name = 'TidemarkError';
  /** True when the same call may succeed later (a transient fault). */
  readonly retryable: boolean = false;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Configuration, flags or a request are invalid; nothing was changed. Not retryable. */
export class ConfigError extends TidemarkError {
  override name = 'ConfigError';
}

/** A request named something that does not exist (checkpoint, queue, object). */
export class NotFoundError extends TidemarkError {
  override name = 'NotFoundError';
}

/** An object the store was asked for does not exist. */
export class ObjectNotFoundError extends NotFoundError {
  override name = 'ObjectNotFoundError';
  constructor(
    readonly key: string,
    readonly store: string,
    options?: { cause?: unknown },
  ) {
    super(`object ${key} not found in store ${store}`, options);
  }
}

/** Stored data failed verification (checksum, decoding, offsets): nothing from it was used. */
export class CorruptDataError extends TidemarkError {
  override name = 'CorruptDataError';
  constructor(
    message: string,
    readonly key: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The request is valid, but the service is not in a state to carry it out (for example a standby
 * coordinator asked to restore); nothing was changed. Sending it elsewhere or later may work.
 */
export class FailedPreconditionError extends TidemarkError {
  override name = 'FailedPreconditionError';
}

/**
 * A checkpoint's segment list does not cover a queue's prefix: no segment holds `offset` (a gap,
 * or the segments end before the cut). `key` names the segment after the gap, or is empty.
 */
export class IncompletePrefixError extends CorruptDataError {
  override name = 'IncompletePrefixError';
  constructor(
    message: string,
    key: string,
    readonly offset: number,
    options?: { cause?: unknown },
  ) {
    super(message, key, options);
  }
}

/** A transient failure of an external part (store, broker, Redis, a peer); safe to retry. */
export class TransientError extends TidemarkError {
  override name = 'TransientError';
  override readonly retryable = true;
}

/** This coordinator's leader lease lapsed while it was still acting as leader: it must stop. */
export class LeadershipLostError extends TidemarkError {
  override name = 'LeadershipLostError';
}

/** A request carried a leader token older than one already seen: a deposed leader. */
export class StaleLeaderError extends TidemarkError {
  override name = 'StaleLeaderError';
  constructor(
    readonly token: number,
    readonly current: number,
  ) {
    super(`leader token ${token} is stale: token ${current} has been seen; the sender is no longer leader`);
  }
}

/**
 * The service is stopping (SIGINT/SIGTERM): the step was given up on purpose, not because
 * anything failed. Not retryable; callers that see it stop quietly.
 */
export class StoppingError extends TidemarkError {
  override name = 'StoppingError';
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
