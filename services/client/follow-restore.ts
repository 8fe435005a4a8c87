/**
 * Following a restore across coordinator failures. A restore runs in the cluster, not in the
 * program watching it: when the coordinator goes away mid-restore (a crash, a leader change) the
 * next leader carries the restore on, and a watcher only has to find it again by id.
 */
import { errorMessage, FailedPreconditionError, TidemarkError } from '../core/client-side/index.js';
import type { RestoreEvent, RestoreRequest } from '../gen/tidemark/v1/admin.js';
import { RestoreFollowLostError } from './errors.js';

/** Which restore `TidemarkClient.followRestore` follows. */
export type FollowRestoreFrom =
  /** Plans and (unless a dry run) starts a new restore, as `restore`. */
  | { request: Partial<RestoreRequest> }
  /** Watches an existing restore, continuing it first if it stopped, as `resumeRestore`. */
  | {
      restoreId: string;
      /**
       * For a restore into a raw broker URL whose password no live coordinator holds (after a
       * failover): the URL with its password (admin role). @default none
       */
      targetAmqpUrl?: string;
    };

export interface FollowRestoreOptions {
  /**
   * Stops following (the restore goes on in the cluster; stop it with `cancelRestore`). The
   * iteration then throws the signal's reason. @default no signal: follow to the end
   */
  signal?: AbortSignal;
  /** How long to keep reconnecting, counted from the first failure since the last event. @default 120000 */
  reconnectForMs?: number;
  /** Pause before each reconnection. @default 1000 */
  retryDelayMs?: number;
  /** Called before each reconnection, with the restore's id and the error that ended the stream. @default none */
  onReconnect?: (restoreId: string, error: unknown) => void;
}

/** How long a follower keeps trying to follow its restore after losing the coordinator. */
export const RECONNECT_FOR_MS = 120_000;
const RETRY_DELAY_MS = 1_000;

/**
 * Yields `events`, then, if the stream breaks with a retryable error once the plan (which carries
 * the restore's id) has arrived, reopens it with `resume(id)` until the `done` event. Before the
 * plan there is no id to follow, so such an error is thrown at once.
 */
export async function* followRestoreEvents(
  events: AsyncIterable<RestoreEvent>,
  resume: (restoreId: string) => AsyncIterable<RestoreEvent>,
  options: FollowRestoreOptions = {},
): AsyncGenerator<RestoreEvent, void, undefined> {
  const reconnectForMs = options.reconnectForMs ?? RECONNECT_FOR_MS;
  const retryDelayMs = options.retryDelayMs ?? RETRY_DELAY_MS;
  let id = '';
  let lostAt = 0;
  for (;;) {
    try {
      for await (const event of events) {
        lostAt = 0;
        if (event.event?.$case === 'plan' && !id) id = event.event.value.restoreId;
        yield event;
        if (event.event?.$case === 'done') return;
      }
      return;
    } catch (err) {
      // FAILED_PRECONDITION: a standby answered, or a leader that is still taking over.
      const retryable = err instanceof FailedPreconditionError || (err instanceof TidemarkError && err.retryable);
      if (!id || options.signal?.aborted || !retryable) throw err;
      lostAt ||= Date.now();
      if (Date.now() - lostAt > reconnectForMs) {
        throw new RestoreFollowLostError(id, `${errorMessage(err)}; restore ${id} may still be running: follow it with "tidemark restore resume ${id}"`, { cause: err });
      }
      options.onReconnect?.(id, err);
      await new Promise((r) => setTimeout(r, retryDelayMs));
      events = resume(id);
    }
  }
}
