/**
 * A time limit on one awaited step. Guards such as "one renewal at a time" or "one scheduled
 * tick at a time" must never be held forever by a call that neither answers nor fails (a Redis
 * command stuck behind a half-open socket, a broker that stopped answering a channel): the step
 * is given up with a TransientError and the next tick tries again. The abandoned call may still
 * settle later; its result is ignored.
 */
import { TransientError } from '../errors.js';

export function withTimeLimit<T>(work: Promise<T>, limitMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TransientError(`${what} took longer than ${limitMs} ms; given up, will retry`)), limitMs);
  });
  work.catch(() => {}); // a late failure of the abandoned call is not unhandled
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}
