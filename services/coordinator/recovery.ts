/**
 * What a new leader does before its first round (step 4 of the protocol), and what a leader does
 * again before its next round when one of its own rounds ended without an outcome (in doubt):
 * - presumed abort: an epoch that was started but never decided is recorded as aborted;
 * - a committed epoch whose manifest is missing (its leader died or failed between recording
 *   COMMIT and writing the manifest) is finished: the manifest is rebuilt from the commit record
 *   and the partition manifests the YES voters staged, each checked against the checksum it
 *   voted with;
 * - the decisions of the recent rounds are returned, so the leader can re-send them to workers
 *   that may have missed them.
 *
 * Only the leader runs this, between rounds (rounds and recovery run one at a time), so a
 * 'started' record never belongs to a round still in progress.
 */
import { createHash } from 'node:crypto';
import { type Catalog, CorruptDataError, type DecisionLog, type DecisionRecord, errorMessage, type Logger, NotFoundError } from '../core/index.js';
import { decodePartition, type ObjectStore } from '../core/store/index.js';
import { assembleManifest } from './checkpoint-round.js';

export interface RecoveryContext {
  decisions: DecisionLog;
  catalog: Catalog;
  store: ObjectStore;
  /** Lease holder string and token of the new leader, for fenced writes. */
  holder: string;
  leaderToken: number;
  log: Logger;
}

export interface RecoveryReport {
  presumedAborted: number[];
  finished: number[];
  /** Committed epochs that could not be finished (staged data missing or corrupt): never visible. */
  unfinishable: number[];
  /** Recent rounds whose outcome workers must hear: visible commits and aborts. */
  decided: Array<{ epoch: number; roundId: string; outcome: 'committed' | 'aborted' }>;
}

/** Decisions of this many newest epochs are re-sent by a new leader. */
const RESEND_EPOCHS = 16;

export async function recoverRounds(context: RecoveryContext): Promise<RecoveryReport> {
  const report: RecoveryReport = { presumedAborted: [], finished: [], unfinishable: [], decided: [] };
  // One listing says which epochs are visible, instead of one request per committed record.
  const visible = new Set(await context.catalog.epochs());
  const records = await context.decisions.all();
  for (const record of records) {
    if (record.state === 'started') {
      await context.decisions.record(context.holder, {
        ...record,
        state: 'aborted',
        reason: 'presumed abort: the leader changed before the round was decided',
        leaderToken: context.leaderToken,
        atMs: Date.now(),
      });
      report.presumedAborted.push(record.epoch);
      record.state = 'aborted';
    } else if (record.state === 'committed' && record.commit && !visible.has(record.epoch)) {
      try {
        await finish(context, record);
        visible.add(record.epoch);
        report.finished.push(record.epoch);
        context.log.warn(`finished checkpoint ${record.epoch}: its leader recorded COMMIT but died before writing the manifest`);
      } catch (err) {
        // Only damage is final. A store or Redis that fails for now fails the whole recovery,
        // which runs again (the lease is released, or the leader retries before its next round).
        if (!(err instanceof CorruptDataError || err instanceof NotFoundError)) throw err;
        report.unfinishable.push(record.epoch);
        context.log.error(`checkpoint ${record.epoch} was committed but cannot be made visible: ${errorMessage(err)}; later checkpoints do not depend on it`);
      }
    }
  }
  const newest = records.length > 0 ? records[records.length - 1].epoch : 0;
  for (const record of records) {
    if (!record.roundId || record.epoch <= newest - RESEND_EPOCHS) continue;
    // A COMMIT is only ever sent for a visible checkpoint: a worker adopts it as its base.
    if (record.state === 'committed' && visible.has(record.epoch)) report.decided.push({ epoch: record.epoch, roundId: record.roundId, outcome: 'committed' });
    if (record.state === 'aborted') report.decided.push({ epoch: record.epoch, roundId: record.roundId, outcome: 'aborted' });
  }
  return report;
}

async function finish(context: RecoveryContext, record: DecisionRecord): Promise<void> {
  const commit = record.commit!;
  const partitions = await Promise.all(
    commit.partitions.map(async (p) => {
      const bytes = await context.store.get(p.key);
      const actual = createHash('sha256').update(bytes).digest('hex');
      if (actual !== p.sha256) {
        throw new CorruptDataError(`staged partition ${p.key} of worker ${p.workerId} has sha256 ${actual}, but the worker voted with ${p.sha256}`, p.key);
      }
      const partition = await decodePartition(bytes, p.key);
      return { workerId: p.workerId, queues: partition.queues };
    }),
  );
  await context.catalog.publish(assembleManifest(record.epoch, commit, record.atMs, partitions));
}
