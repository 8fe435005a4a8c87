/**
 * Queues outside a checkpoint's cut (G8: one queue that cannot be captured never stops the
 * others). Pure: the round (checkpoint-round.ts), recovery and the workers' decisions use these,
 * and so does the simulation.
 *
 * - a queue that could not take part in a committed round is carried forward: its entry is the
 *   parent checkpoint's entry, unchanged (it references its own chain, so restore, verify and
 *   consolidation read it like any entry), marked `outside_cut` with the checkpoint whose cut it
 *   still holds and since when. A queue no earlier checkpoint holds is left out;
 * - a worker adopts a round's cut as a queue's base only for the queues the checkpoint took from
 *   its vote (`counted`): adopting it for a carried queue would build the next part on a cut the
 *   manifest does not hold, and the chain would break. A worker none of whose queues were taken
 *   is told ABORT.
 */
import type { OutsideCutQueue } from '../gen/tidemark/v1/admin.js';
import type { CheckpointManifest, IncompleteMark, QueueCheckpoint } from '../gen/tidemark/v1/store.js';
import { Decision, type DecideRequest, type QueueRef } from '../gen/tidemark/v1/worker.js';
import { type OutsideQueue, queueKey } from '../core/index.js';

/** A queue that could not take part in a round, by queue id, and why. */
export type QueueFailures = Map<string, { vhost: string; queue: string; reason: string }>;

/**
 * The outside marks of a round's failed queues. `priorEntry` gives the parent checkpoint's entry
 * of a queue: a queue already outside keeps its `since_epoch` and `since_ms`, one that was inside
 * is outside since the parent (and since `nowMs`); one with no entry is left out (since 0).
 */
export function outsideQueues(failures: QueueFailures, parentEpoch: number, nowMs: number, priorEntry: (id: string) => QueueCheckpoint | undefined): OutsideQueue[] {
  const outside: OutsideQueue[] = [];
  for (const [id, { vhost, queue, reason }] of failures) {
    const prior = parentEpoch === 0 ? undefined : priorEntry(id);
    const since = prior?.outsideCut;
    outside.push({
      vhost,
      queue,
      sinceEpoch: prior ? (since?.sinceEpoch ?? parentEpoch) : 0,
      sinceMs: prior ? (since?.sinceMs ?? nowMs) : nowMs,
      reason,
    });
  }
  return outside.sort((a, b) => byte(a.vhost, b.vhost) || byte(a.queue, b.queue));
}

/** The entry of a carried queue: its parent entry as it is, with this checkpoint's marks and its outside mark. */
export function carriedEntry(parent: QueueCheckpoint, outside: OutsideQueue, incomplete: IncompleteMark[]): QueueCheckpoint {
  return { ...parent, incomplete, outsideCut: { sinceEpoch: outside.sinceEpoch, sinceMs: outside.sinceMs, reason: outside.reason } };
}

/** Per worker, the queues of `manifest` inside its cut that came from that worker's vote. */
export function countedByWorker(manifest: CheckpointManifest): Map<string, QueueRef[]> {
  const counted = new Map<string, QueueRef[]>();
  for (const q of manifest.queues) {
    if (q.outsideCut) continue;
    const list = counted.get(q.workerId) ?? [];
    list.push({ vhost: q.definition!.vhost, queue: q.definition!.name, census: undefined });
    counted.set(q.workerId, list);
  }
  return counted;
}

/** Whether any queue of the round is outside its cut: then every COMMIT lists what it counted. */
export function isPartial(manifest: CheckpointManifest, outside: readonly OutsideQueue[] | undefined): boolean {
  return (outside?.length ?? 0) > 0 || manifest.queues.some((q) => q.outsideCut);
}

/**
 * The DECIDE a worker gets. `counted` undefined: every queue of its vote was taken (a COMMIT with
 * an empty list, as older leaders send). Otherwise a COMMIT lists them, and a worker none of whose
 * queues were taken gets ABORT: to it the round is as if aborted.
 */
export function decideRequest(round: { leaderToken: number; epoch: number; roundId: string }, committed: boolean, counted: QueueRef[] | undefined): DecideRequest {
  const commit = committed && (counted === undefined || counted.length > 0);
  return {
    leaderToken: round.leaderToken,
    epoch: round.epoch,
    roundId: round.roundId,
    decision: commit ? Decision.DECISION_COMMIT : Decision.DECISION_ABORT,
    counted: commit ? (counted ?? []) : [],
  };
}

/** "2 queue(s) outside the cut: /a since checkpoint 4 (why); /b left out, no checkpoint holds it yet (why)". */
export function describeOutside(outside: readonly OutsideQueue[]): string {
  const shown = outside.slice(0, 5).map((o) =>
    o.sinceEpoch > 0 ? `${o.vhost}/${o.queue} carried from checkpoint ${o.sinceEpoch} (${o.reason})` : `${o.vhost}/${o.queue} left out, no checkpoint holds it yet (${o.reason})`,
  );
  const more = outside.length > 5 ? ` and ${outside.length - 5} more` : '';
  return `${outside.length} queue(s) outside the cut: ${shown.join('; ')}${more}`;
}

/** The queues of `manifest` outside its cut (G8), oldest first: those that have waited longest lead. */
export function outsideCutQueues(manifest: CheckpointManifest): OutsideCutQueue[] {
  return manifest.queues
    .filter((q) => q.outsideCut)
    .map((q) => ({ vhost: q.definition!.vhost, queue: q.definition!.name, sinceEpoch: q.outsideCut!.sinceEpoch, sinceMs: q.outsideCut!.sinceMs, reason: q.outsideCut!.reason }))
    .sort((a, b) => a.sinceMs - b.sinceMs || a.sinceEpoch - b.sinceEpoch);
}

/** The ids of `outside`. */
export function outsideIds(outside: readonly OutsideQueue[] | undefined): Set<string> {
  return new Set((outside ?? []).map((o) => queueKey(o.vhost, o.queue)));
}

function byte(x: string, y: string): number {
  return x < y ? -1 : x > y ? 1 : 0;
}
