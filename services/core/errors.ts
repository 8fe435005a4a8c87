/**
 * Errors shared by every Tidemark service, and core's own. Each says what happened, what was kept
 * safe, and what to do next; `retryable` tells callers whether trying again can help. Errors that
 * mean something only in one module live in that module's errors.ts (coordinator, worker).
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
 * A standby coordinator was asked for what only the leader does (a checkpoint, a restore, a
 * deletion); nothing was done. `leaderAddress` is where the leader's admin API is reached, when
 * the standby knows it (the `tidemark-leader-address` trailer, docs/API.md): clients send the
 * call there.
 */
export class NotLeaderError extends FailedPreconditionError {
  override name = 'NotLeaderError';
  constructor(
    message: string,
    readonly leaderAddress?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The caller of an admin API call could not be identified: no credentials, or a token or
 * certificate nobody configured. Nothing was done. Maps to gRPC UNAUTHENTICATED.
 */
export class UnauthenticatedError extends TidemarkError {
  override name = 'UnauthenticatedError';
}

/**
 * The caller is known, but its role does not allow the call (or this form of it). Nothing was
 * done. Maps to gRPC PERMISSION_DENIED.
 */
export class PermissionDeniedError extends TidemarkError {
  override name = 'PermissionDeniedError';
}

/**
 * A worker tried to record progress for a queue of a restore that the leader did not assign to
 * it (another restore's id, another worker's queue, or an attempt since replaced): nothing was
 * recorded (core/state/restore-state.ts).
 */
export class RestoreAssignmentError extends TidemarkError {
  override name = 'RestoreAssignmentError';
  constructor(
    readonly restoreId: string,
    readonly queueKey: string,
  ) {
    super(`restore ${restoreId} did not assign ${queueKey.replace('\u0000', '/')} to this task (another worker or a newer attempt has it, or no such restore runs); its progress was not recorded`);
  }
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
    options?: { cause?: unknown },
  ) {
    super(`leader token ${token} is stale: token ${current} has been seen; the sender is no longer leader`, options);
  }
}

/**
 * A fenced Redis write (decision log) was refused because the leader key no longer holds this
 * coordinator's lease: it expired, or another coordinator took it. Nothing was written; the
 * request belongs to whichever coordinator leads now.
 */
export class NotLeaseHolderError extends FailedPreconditionError {
  override name = 'NotLeaseHolderError';
  constructor(
    readonly token: number,
    what: string,
    options?: { cause?: unknown },
  ) {
    super(`this coordinator no longer holds the leader lease (its token was ${token}): ${what} refused; the current leader carries on`, options);
  }
}

/** The decision log already holds another decision for `epoch` (I4): the write was refused. */
export class DecisionConflictError extends TidemarkError {
  override name = 'DecisionConflictError';
  constructor(
    readonly epoch: number,
    readonly state: string,
    options?: { cause?: unknown },
  ) {
    super(`epoch ${epoch} was already decided otherwise; refusing to record ${state}`, options);
  }
}

/** A broker message is not what its queue should hold (e.g. a firehose message that is no publish trace). */
export class MalformedMessageError extends TidemarkError {
  override name = 'MalformedMessageError';
}

/** The error a `fail` failpoint throws (failpoints.ts). */
export class FailpointError extends TidemarkError {
  override name = 'FailpointError';
  constructor(
    /** The failpoint's name (FailpointName in failpoints.ts). */
    readonly point: string,
    options?: { cause?: unknown },
  ) {
    super(`failpoint ${point} fired (mode fail): injected fault, configured by TIDEMARK_FAILPOINTS`, options);
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

/** The operator cancelled the restore; what was published stays, and it can be resumed. */
export class RestoreCancelledError extends TidemarkError {
  override name = 'RestoreCancelledError';
}

/** The broker answered a probe of a queue or stream with an error other than "not found". */
export class QueueProbeError extends TidemarkError {
  override name = 'QueueProbeError';
}

/** The management API answered with an error or something that is not its JSON. */
export class ManagementApiError extends TidemarkError {
  override name = 'ManagementApiError';
}

/** A name cannot be made into a journal, a store key or a stored field (too long, empty, not representable). */
export class NameError extends TidemarkError {
  override name = 'NameError';
}

/** A value cannot be encoded into, or decoded from, Tidemark's formats (segments, field tables). */
export class FormatError extends TidemarkError {
  override name = 'FormatError';
}

/** The object store failed in a way that is neither transient nor a configuration problem. */
export class StoreError extends TidemarkError {
  override name = 'StoreError';
}

/**
 * Stored data failed authentication: an encrypted object whose tag does not verify (altered,
 * forged, or sealed for another purpose), or a plaintext object where only encrypted ones may be.
 * Nothing from it was used. A CorruptDataError, so every path that refuses damaged data refuses it.
 */
export class UnauthenticatedDataError extends CorruptDataError {
  override name = 'UnauthenticatedDataError';
}

/**
 * A key needed to read or write encrypted objects is not available: the object's data key is
 * wrapped by a master key that is not configured, or the configured master key cannot unwrap it.
 * `keyId` names the key (never its bytes). Nothing was read or published.
 */
export class KeyUnavailableError extends FailedPreconditionError {
  override name = 'KeyUnavailableError';
  constructor(
    message: string,
    readonly keyId: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * An object is larger than it may be (its manifest's recorded size, or a cap for its kind), or
 * decompresses to more than that: it was not read whole or not decompressed further. `key` names it.
 */
export class OversizedObjectError extends CorruptDataError {
  override name = 'OversizedObjectError';
}
