/**
 * What a new leader does before its first round (step 4 of the protocol), and what a leader does
 * again before its next round when one of its own rounds ended without an outcome (in doubt):
 * presumed abort, finishing committed epochs whose manifest is missing, and the recent decisions
 * to re-send. What to do is decided by RecoveryPlan (recovery-plan.ts), a pure state machine the
 * simulation (test/sim) runs too; this file only executes its steps against Redis and the store.
 *
 * Only the leader runs this, between rounds (rounds and recovery run one at a time), so a
 * 'started' record never belongs to a round still in progress.
 */
import { createHash } from 'node:crypto';
import { type Catalog, type Clock, type CommitRecord, CorruptDataError, type DecisionLog, errorMessage, type Logger, systemClock } from '../core/index.js';
import { decodePartition, MAX_MANIFEST_BYTES, type ObjectStore } from '../core/store/index.js';
import type { VotedPartition } from './checkpoint-round.js';
import { isFinalFinishError, RecoveryPlan, stagedMismatch, type RecoveryReport } from './recovery-plan.js';
import { countedByWorker } from './outside-cut.js';

export interface RecoveryContext {
  decisions: DecisionLog;
  catalog: Catalog;
  store: ObjectStore;
  /** Lease holder string and token of the new leader, for fenced writes. */
  holder: string;
  leaderToken: number;
  log: Logger;
  /** The time recovery's records carry. @default systemClock */
  clock?: Clock;
}

export type { RecoveryReport } from './recovery-plan.js';

export async function recoverRounds(context: RecoveryContext): Promise<RecoveryReport> {
  // One listing says which epochs are visible, instead of one request per committed record.
  const visible = await context.catalog.epochs();
  const plan = new RecoveryPlan(await context.decisions.all(), visible, context.leaderToken);
  const clock = context.clock ?? systemClock;
  for (let step = plan.step(clock.now()); step; step = plan.step(clock.now())) {
    if (step.kind === 'record') {
      await context.decisions.record(context.holder, step.record);
      plan.recorded(step);
      continue;
    }
    try {
      const parent = step.parentEpoch > 0 ? await context.catalog.get(step.parentEpoch) : undefined;
      await context.catalog.publish(await context.catalog.inheritHistory(plan.manifest(step, await readStaged(context, step.commit), parent)));
      plan.finished(step);
      context.log.warn('finished a checkpoint whose leader recorded COMMIT but died before writing the manifest', { epoch: step.epoch });
    } catch (err) {
      // Only damage is final; anything else fails the whole recovery, which runs again.
      if (!isFinalFinishError(err)) throw err;
      plan.unfinishable(step);
      context.log.error('a committed checkpoint cannot be made visible; later checkpoints do not depend on it', { epoch: step.epoch, err: errorMessage(err) });
    }
  }
  // A partial commit's workers must hear which of their queues were counted: its manifest says.
  for (const round of plan.report.decided) {
    if (round.partial) round.counted = countedByWorker(await context.catalog.get(round.epoch));
  }
  return plan.report;
}

/** The partitions the YES voters staged, each checked against the checksum it voted with. */
async function readStaged(context: RecoveryContext, commit: CommitRecord): Promise<VotedPartition[]> {
  return Promise.all(
    commit.partitions.map(async (p) => {
      const bytes = await context.store.get(p.key, { maxBytes: MAX_MANIFEST_BYTES });
      const mismatch = stagedMismatch(p, createHash('sha256').update(bytes).digest('hex'));
      if (mismatch) throw new CorruptDataError(mismatch, p.key);
      const partition = await decodePartition(bytes, p.key, context.store.vault);
      return { workerId: p.workerId, queues: partition.queues };
    }),
  );
}
