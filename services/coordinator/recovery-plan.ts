/**
 * What recovery decides, without any I/O (step 4 of the protocol): a state machine over the
 * decision log and the list of visible epochs that hands out one step at a time and is told how
 * each went. recovery.ts executes it against Redis and the store; the simulation (test/sim)
 * executes the very same machine against its simulated ones, so a bug here is a bug there.
 *
 * - presumed abort: an epoch still `started` gets an `aborted` record to write (I4: Redis keeps
 *   a decision once taken, so a COMMIT that landed meanwhile wins and the write is refused);
 * - a committed epoch with a commit record and no manifest gets a `finish` step: its staged
 *   partitions are checked against the sha256 each worker voted with (`stagedMismatch`) and the
 *   manifest is assembled from them (`manifest`). Only damage (`isFinalFinishError`: missing or
 *   mismatched staged data) makes it unfinishable; any other failure fails the whole recovery,
 *   which runs again;
 * - a finished round that carried queues from the parent checkpoint (G8, outside its cut) is
 *   assembled from the parent's entries too (`parentEpoch` of the step: read it, pass it to
 *   `manifest`), exactly as the dead leader did from its plan;
 * - the report's `decided` lists the decisions workers must hear of, among the RESEND_EPOCHS
 *   newest recorded epochs: aborts, and commits whose manifest is visible (a worker adopts a
 *   COMMIT as its base, so one is never sent for an invisible checkpoint). A commit with queues
 *   outside its cut is `partial`: each worker must hear which of its queues were counted, which
 *   its visible manifest says (read it, `countedByWorker`, then `resendRequests`).
 */
import { type CommitRecord, CorruptDataError, type DecisionRecord, NotFoundError, queueKey } from '../core/index.js';
import type { CheckpointManifest } from '../gen/tidemark/v1/store.js';
import type { DecideRequest, QueueRef } from '../gen/tidemark/v1/worker.js';
import { assembleManifest, type Outcome, type VotedPartition } from './checkpoint-round.js';
import { decideRequest } from './outside-cut.js';

/** Decisions of this many newest epochs are re-sent by a new leader. */
export const RESEND_EPOCHS = 16;

export const PRESUMED_ABORT_REASON = 'presumed abort: the leader changed before the round was decided';

export interface RecoveryReport {
  presumedAborted: number[];
  finished: number[];
  /** Committed epochs that could not be finished (staged data missing or corrupt): never visible. */
  unfinishable: number[];
  /** Recent rounds whose outcome workers must hear: visible commits and aborts. */
  decided: DecidedRound[];
}

/** A recent round whose decision workers must hear. */
export interface DecidedRound {
  epoch: number;
  roundId: string;
  outcome: Outcome;
  /** Committed with queues outside its cut: each worker's COMMIT lists what it counted. */
  partial?: boolean;
  /** For a partial commit: per worker, the queues its visible manifest took from that worker's vote (countedByWorker). */
  counted?: Map<string, QueueRef[]>;
}

export type RecoveryStep =
  /** Write `record` (the epoch, now `aborted`) to the decision log, fenced; then `recorded(step)`. */
  | { kind: 'record'; epoch: number; record: DecisionRecord }
  /**
   * Read `commit.partitions` from the store, check each (`stagedMismatch`), publish
   * `manifest(step, partitions)`; then `finished(step)`, or `unfinishable(step)` if what failed is final.
   */
  | {
      kind: 'finish';
      epoch: number;
      record: DecisionRecord;
      commit: CommitRecord;
      /** The parent checkpoint whose entries the manifest carries (G8): read it for `manifest`; 0: none needed. */
      parentEpoch: number;
    };

export class RecoveryPlan {
  readonly report: RecoveryReport = { presumedAborted: [], finished: [], unfinishable: [], decided: [] };
  private readonly records: DecisionRecord[];
  private readonly visible: Set<number>;
  private next = 0;

  /**
   * @param records the whole decision log, oldest first (DecisionLog.all)
   * @param visibleEpochs every epoch whose manifest is in the store (Catalog.epochs)
   * @param leaderToken the new leader's token, for the records it writes
   */
  constructor(
    records: readonly DecisionRecord[],
    visibleEpochs: Iterable<number>,
    private readonly leaderToken: number,
  ) {
    this.records = records.map((r) => ({ ...r }));
    this.visible = new Set(visibleEpochs);
  }

  /**
   * The next step, oldest epoch first, or undefined when there is none left and `report` is
   * complete. `nowMs` stamps a record written now.
   */
  step(nowMs: number): RecoveryStep | undefined {
    while (this.next < this.records.length) {
      const record = this.records[this.next++];
      if (record.state === 'started') {
        return {
          kind: 'record',
          epoch: record.epoch,
          record: { ...record, state: 'aborted', reason: PRESUMED_ABORT_REASON, leaderToken: this.leaderToken, atMs: nowMs },
        };
      }
      if (record.state === 'committed' && record.commit && !this.visible.has(record.epoch)) {
        const carries = record.commit.outside?.some((o) => o.sinceEpoch > 0) ?? false;
        return { kind: 'finish', epoch: record.epoch, record, commit: record.commit, parentEpoch: carries ? record.commit.parentEpoch : 0 };
      }
    }
    if (this.next === this.records.length) {
      this.next += 1;
      this.report.decided = this.toResend();
    }
    return undefined;
  }

  /** A `record` step's write landed: the epoch is decided as that record says. */
  recorded(step: Extract<RecoveryStep, { kind: 'record' }>): void {
    this.report.presumedAborted.push(step.epoch);
    this.recordOf(step.epoch).state = step.record.state;
  }

  /** A `finish` step's manifest landed: the epoch is visible. */
  finished(step: Extract<RecoveryStep, { kind: 'finish' }>): void {
    this.visible.add(step.epoch);
    this.report.finished.push(step.epoch);
  }

  /** A `finish` step failed for good (isFinalFinishError): the epoch never becomes visible. */
  unfinishable(step: Extract<RecoveryStep, { kind: 'finish' }>): void {
    this.report.unfinishable.push(step.epoch);
  }

  /**
   * The manifest a `finish` step publishes, from the staged partitions it read and, when the step
   * names a `parentEpoch`, that checkpoint's manifest (whose entries it carries forward).
   */
  manifest(step: Extract<RecoveryStep, { kind: 'finish' }>, partitions: VotedPartition[], parent?: CheckpointManifest): CheckpointManifest {
    const entries = new Map(parent?.queues.map((q) => [queueKey(q.definition!.vhost, q.definition!.name), q]));
    return assembleManifest(step.epoch, step.commit, step.record.atMs, partitions, undefined, (vhost, queue) => entries.get(queueKey(vhost, queue)));
  }

  private recordOf(epoch: number): DecisionRecord {
    return this.records.find((r) => r.epoch === epoch)!;
  }

  private toResend(): RecoveryReport['decided'] {
    const newest = this.records.length > 0 ? this.records[this.records.length - 1].epoch : 0;
    const decided: RecoveryReport['decided'] = [];
    for (const record of this.records) {
      if (!record.roundId || record.epoch <= newest - RESEND_EPOCHS) continue;
      if (record.state === 'committed' && this.visible.has(record.epoch)) {
        const partial = (record.commit?.outside?.length ?? 0) > 0;
        decided.push({ epoch: record.epoch, roundId: record.roundId, outcome: 'committed', ...(partial ? { partial } : {}) });
      }
      if (record.state === 'aborted') decided.push({ epoch: record.epoch, roundId: record.roundId, outcome: 'aborted' });
    }
    return decided;
  }
}

/**
 * Why a staged partition read by a `finish` step cannot be used, or undefined if it can: it must
 * be the very bytes its worker voted with. A mismatch is final (a CorruptDataError).
 */
export function stagedMismatch(partition: CommitRecord['partitions'][number], sha256: string): string | undefined {
  if (sha256 === partition.sha256) return undefined;
  return `staged partition ${partition.key} of worker ${partition.workerId} has sha256 ${sha256}, but the worker voted with ${partition.sha256}`;
}

/**
 * Only damage is final: staged data missing (NotFoundError) or not what was voted
 * (CorruptDataError). A store or Redis that fails for now fails the whole recovery, which runs
 * again (the lease is released, or the leader retries before its next round).
 */
export function isFinalFinishError(err: unknown): boolean {
  return err instanceof CorruptDataError || err instanceof NotFoundError;
}

/**
 * The DECIDE each of `workerIds` gets for a recent round. A partial commit tells each worker the
 * queues counted from its vote (none: ABORT), as the round's own leader did; a partial commit
 * whose `counted` is unknown is not re-sent (the worker asks, and the manifest answers).
 */
export function resendRequests(round: DecidedRound, workerIds: Iterable<string>, leaderToken: number): Array<{ workerId: string; request: DecideRequest }> {
  if (round.partial && !round.counted) return [];
  const base = { leaderToken, epoch: round.epoch, roundId: round.roundId };
  return [...workerIds].map((workerId) => ({
    workerId,
    request: decideRequest(base, round.outcome === 'committed', round.partial ? (round.counted!.get(workerId) ?? []) : undefined),
  }));
}
