/**
 * COMMITs a worker may still act on, for retention (pure). A worker that hears COMMIT of epoch E
 * takes E as the base of its captures, so E must stay visible until no such DECIDE can arrive:
 * while a send is outstanding, for a deadline after it ended (a request that reached the worker
 * just before its deadline may still be applied), and while the leader's re-send queue
 * (UndeliveredDecisions) holds it. Otherwise a late COMMIT would give a worker a base that retention
 * deleted, and its next votes would abort (checkYes) until it heard a newer one.
 */
import { Decision, type DecideRequest } from '../gen/tidemark/v1/worker.js';
import type { Protection } from './checkpoint-retention.js';

export class DecisionsInFlight {
  private readonly outstanding = new Map<number, number>();
  private readonly endedAt = new Map<number, number>();

  constructor(
    /** How long after a send ended the worker may still apply it (the DECIDE deadline). */
    private readonly slackMs: number,
  ) {}

  /** A DECIDE is being sent (any outcome; only COMMITs count). */
  sending(request: DecideRequest): void {
    if (request.decision !== Decision.DECISION_COMMIT) return;
    this.outstanding.set(request.epoch, (this.outstanding.get(request.epoch) ?? 0) + 1);
  }

  /** The send of `request` ended, answered or not, at `nowMs`. */
  ended(request: DecideRequest, nowMs: number): void {
    if (request.decision !== Decision.DECISION_COMMIT) return;
    const left = (this.outstanding.get(request.epoch) ?? 1) - 1;
    if (left <= 0) this.outstanding.delete(request.epoch);
    else this.outstanding.set(request.epoch, left);
    this.endedAt.set(request.epoch, nowMs);
  }

  /** What retention must keep now, with the COMMITs `queued` for re-sending. */
  protections(nowMs: number, queued: Iterable<DecideRequest>): Protection[] {
    const epochs = new Set(this.outstanding.keys());
    for (const [epoch, at] of this.endedAt) {
      if (nowMs < at + this.slackMs) epochs.add(epoch);
      else this.endedAt.delete(epoch);
    }
    for (const request of queued) if (request.decision === Decision.DECISION_COMMIT) epochs.add(request.epoch);
    return [...epochs].sort((a, b) => a - b).map((epoch) => ({ epoch, reason: 'checkpoint whose COMMIT a worker may still apply (a DECIDE in flight or queued)' }));
  }
}
