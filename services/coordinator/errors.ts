/**
 * The coordinator's own errors; those every service shares are core's (services/core/errors.ts).
 * A restore job's abort reasons are errors too: its queues' calls end with them.
 */
import { FailedPreconditionError, TidemarkError } from '../core/index.js';

/** The broker could not say whether it restarted (broker-continuity.ts): the round's fences fail. */
export class ContinuityCheckError extends TidemarkError {
  override name = 'ContinuityCheckError';
  constructor(
    readonly vhost: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The restore was stopped to be handed over (the leader is stopping or deposed); the next leader resumes it. */
export class RestoreInterruptedError extends TidemarkError {
  override name = 'RestoreInterruptedError';
}

/** A restore drill could not set up or reach its scratch vhost; what it says names what to clean up. */
export class DrillSetupError extends TidemarkError {
  override name = 'DrillSetupError';
}

/** `tidemark checkpoints delete` named a checkpoint that retention's protections hold. */
export class CheckpointProtectedError extends FailedPreconditionError {
  override name = 'CheckpointProtectedError';
  constructor(
    readonly epoch: number,
    readonly blockers: string[],
  ) {
    super(
      `checkpoint ${epoch} was not deleted, because ${blockers.join('; and ')}. Nothing was changed. ` +
        'Delete the checkpoints read through it first, wait until a newer checkpoint is the latest (or has passed "tidemark verify"), let the restore finish, or wait out the grace period (TIDEMARK_GC_GRACE)',
    );
  }
}
