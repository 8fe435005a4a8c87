/**
 * Gives up waiting for a step when a signal aborts, e.g. a service being stopped while it still
 * starts: a connect, a bucket check or a lease read that neither answers nor fails must not keep
 * SIGTERM waiting. The abandoned work may still settle later: `release` then closes what it
 * opened (a connection, a store), so nothing it made outlives the stop.
 */
import { StoppingError } from '../errors.js';

export function abortable<T>(work: Promise<T>, signal: AbortSignal | undefined, release?: (value: T) => unknown): Promise<T> {
  if (!signal) return work;
  const abandon = () => {
    work.then(
      (value) => release?.(value),
      () => {}, // a late failure of the abandoned step is not unhandled
    );
  };
  if (signal.aborted) {
    abandon();
    return Promise.reject(stopReason(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      abandon();
      reject(stopReason(signal));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** Throws the signal's reason (as a StoppingError) if it has aborted: a check between steps. */
export function throwIfStopping(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw stopReason(signal);
}

/** A StoppingError for an aborted signal (its reason, if it is one). */
export function stopReason(signal: AbortSignal): StoppingError {
  const reason: unknown = signal.reason;
  return reason instanceof StoppingError ? reason : new StoppingError('stopping: the step was given up', { cause: reason });
}
