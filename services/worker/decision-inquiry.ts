/**
 * A worker that voted YES and has not heard the decision asks for it (step 4 of the protocol).
 * It does not need the leader for that: the decision log (Redis) and the store say everything.
 *
 * What matters to the worker is one thing: may it adopt the round's cut as its queues' base?
 * Only if the round's manifest is visible (a base must be a visible checkpoint). It may forget
 * the round once the round can never become visible; otherwise it keeps asking.
 */
import { type DecisionState, queueKey } from '../core/index.js';
import type { CheckpointManifest } from '../gen/tidemark/v1/store.js';

export type InquiryAnswer = 'commit' | 'abort' | 'wait';

export interface InquiryFacts {
  /** The decision log's record of the epoch, if it has one. */
  record?: { state: DecisionState; roundId?: string };
  /** The round id in the visible manifest of the epoch, if the epoch is visible. */
  manifestRoundId?: string;
  /** The newest visible epoch; asked for only when the record says committed. */
  newestVisible?: number;
}

export function answerInquiry(round: { epoch: number; roundId: string }, facts: InquiryFacts): InquiryAnswer {
  if (facts.manifestRoundId !== undefined) {
    // A manifest of the same epoch number from another round (after Redis was lost) is not ours.
    return facts.manifestRoundId === round.roundId ? 'commit' : 'abort';
  }
  const record = facts.record;
  // The round's own record was written before its fences, so before our vote. Without it (Redis
  // lost, or an epoch number reused by a later round) no leader can record COMMIT for our round:
  // decision writes are fenced by the lease, which was lost with it.
  if (!record || (record.roundId !== undefined && record.roundId !== round.roundId)) return 'abort';
  if (record.state === 'aborted') return 'abort';
  // A committed round whose manifest is missing while a later checkpoint is visible could not be
  // finished (its staged data was lost): a later base supersedes it, so it can be forgotten.
  if (record.state === 'committed' && facts.newestVisible !== undefined && facts.newestVisible > round.epoch) return 'abort';
  // 'started': the leader (or the next one, by presumed abort) will decide. 'committed' without
  // a manifest: the manifest is still being written or will be by the next leader.
  return 'wait';
}

/**
 * The queues of `workerId` a visible manifest took from its vote (inside the cut, G8), by
 * queueKey: on a COMMIT found by asking, only these adopt the cut as their base. A queue carried
 * forward (outside_cut) or left out keeps its previous base.
 */
export function countedFor(manifest: CheckpointManifest, workerId: string): Set<string> {
  return new Set(manifest.queues.filter((q) => !q.outsideCut && q.workerId === workerId).map((q) => queueKey(q.definition!.vhost, q.definition!.name)));
}
