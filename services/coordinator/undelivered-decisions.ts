/**
 * The leader's queue of decisions to re-send (step 4 of the protocol): DECIDEs a round could not
 * deliver (DECIDE_ATTEMPTS in timing.ts) and the recent decisions recovery returns, per worker.
 * A worker that voted YES keeps its round's fence until it hears the decision (or asks for it),
 * so the leader re-sends each on every scheduler tick until the worker has it, refuses it for
 * good, or leaves. Pure: decision-redelivery.ts sends, and the simulation (test/sim) drives this
 * same queue.
 */
import type { DecideRequest } from '../gen/tidemark/v1/worker.js';

export class UndeliveredDecisions {
  /** By worker, then by round id, each in the order first queued. */
  private readonly byWorker = new Map<string, Map<string, DecideRequest>>();

  /** Workers with something to send. */
  get size(): number {
    return this.byWorker.size;
  }

  /** A decision to send to `workerId`; a later one of the same round replaces it, in place. */
  remember(workerId: string, request: DecideRequest): void {
    let pending = this.byWorker.get(workerId);
    if (!pending) this.byWorker.set(workerId, (pending = new Map()));
    pending.set(request.roundId, request);
  }

  /** A new leader starts over: recovery queues what workers must hear. */
  clear(): void {
    this.byWorker.clear();
  }

  /** The workers to send to, in the order first queued; one queued while iterating is visited too. */
  workers(): IterableIterator<string> {
    return this.byWorker.keys();
  }

  /** The oldest decision still to send to `workerId`. */
  next(workerId: string): DecideRequest | undefined {
    return this.byWorker.get(workerId)?.values().next().value;
  }

  /** The decision of `roundId` reached `workerId`, or was refused for good: nothing left to send. */
  settled(workerId: string, roundId: string): void {
    const pending = this.byWorker.get(workerId);
    pending?.delete(roundId);
    if (pending?.size === 0) this.byWorker.delete(workerId);
  }

  /** Every queued decision, for retention: a COMMIT still to send names a checkpoint a worker may adopt. */
  *queued(): IterableIterator<DecideRequest> {
    for (const pending of this.byWorker.values()) yield* pending.values();
  }

  /** `workerId` left the membership: its decisions are dropped. */
  drop(workerId: string): void {
    this.byWorker.delete(workerId);
  }
}
