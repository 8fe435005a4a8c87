/**
 * Re-sending the decisions workers have not acknowledged (step 4 of the protocol), on every
 * scheduler tick. What is owed to whom is UndeliveredDecisions (undelivered-decisions.ts, pure,
 * which the simulation drives too); this sends it.
 *
 * - one re-send at a time: a tick that finds one still running leaves it be;
 * - each worker's decisions go in the order first queued, and a worker still unreachable keeps
 *   the rest of its queue for the next tick;
 * - decisions of workers that left membership (no client in the pool) are dropped: a worker that
 *   comes back asks for the decisions it missed (core/state/decision-log.ts);
 * - each is sent with the leader's current token, not the one of the round that decided it.
 */
import type { Logger, WorkerClient } from '../core/index.js';
import { deliverDecision } from './round-runner.js';
import { REDELIVER_ATTEMPTS } from './timing.js';
import { UndeliveredDecisions } from './undelivered-decisions.js';

export class DecisionRedelivery {
  /** Decisions workers have not acknowledged yet; re-sent each tick. */
  readonly undelivered = new UndeliveredDecisions();
  private sending = false;

  /** Re-sends undelivered decisions; those of workers that left membership are dropped. */
  async resend(clients: ReadonlyMap<string, WorkerClient>, leaderToken: () => number, log: Logger): Promise<void> {
    if (this.sending || this.undelivered.size === 0) return;
    this.sending = true;
    try {
      for (const workerId of this.undelivered.workers()) {
        const client = clients.get(workerId);
        if (!client) {
          this.undelivered.drop(workerId);
          continue;
        }
        for (let request = this.undelivered.next(workerId); request; request = this.undelivered.next(workerId)) {
          if (!(await deliverDecision(client, { ...request, leaderToken: leaderToken() }, REDELIVER_ATTEMPTS, log))) break; // still unreachable: try again next tick
          this.undelivered.settled(workerId, request.roundId);
        }
      }
    } finally {
      this.sending = false;
    }
  }
}
