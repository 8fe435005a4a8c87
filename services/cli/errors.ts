/** The CLI's own errors; what a command ends with otherwise comes from the client and core. */
import { TidemarkError } from '../core/index.js';

/** Ctrl-C during a command that follows work in the cluster (restore, verify, restore-drill). */
export class InterruptedError extends TidemarkError {
  override name = 'InterruptedError';
}

/** The coordinator closed a verify or drill stream without its final result; running it again is safe. */
export class NoResultError extends TidemarkError {
  override name = 'NoResultError';
}
