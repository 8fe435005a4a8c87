/**
 * services/coordinator/recovery.ts step for step, each Redis and store call a simulated call that
 * can fail. A new leader runs it before its first round, and a leader runs it again while a round
 * of its own is in doubt (coordinator-node.ts):
 * - one listing of the store says which epochs are visible, then the whole decision log is read;
 * - an epoch still `started` is recorded `aborted` (presumed abort); a refused or failed write
 *   fails the whole recovery;
 * - a `committed` epoch with a commit record and no manifest is finished from the staged
 *   partitions, each checked against the sha256 its worker voted with, with the REAL
 *   `assembleManifest`. Missing or mismatched staged data (NotFoundError, CorruptDataError) makes
 *   the epoch "unfinishable"; a transient store error fails the whole recovery, which runs again
 *   (KnownGaps: it used to make the epoch unfinishable too);
 * - the recent decisions (of the 16 newest recorded epochs: aborted ones, and committed ones whose
 *   manifest is visible) are returned, for the leader to re-send.
 */
import { assembleManifest, type Outcome, type VotedPartition } from '../../services/coordinator/checkpoint-round.js';
import type { CoordinatorNode } from './coordinator-node.js';
import type { SimDecisionRecord } from './redis.js';
import type { Result } from './worker-node.js';
import type { World } from './world.js';

export interface RecoveryReport {
  presumedAborted: number[];
  finished: number[];
  unfinishable: number[];
  decided: Array<{ epoch: number; roundId: string; outcome: Outcome }>;
}

/** recovery.ts RESEND_EPOCHS. */
const RESEND_EPOCHS = 16;

export function recoverRounds(world: World, leader: CoordinatorNode, done: (result: Result<RecoveryReport>) => void): void {
  const { net, redis, store, options } = world;
  const report: RecoveryReport = { presumedAborted: [], finished: [], unfinishable: [], decided: [] };
  const fail = (error: string) => done({ ok: false, error });
  // The holder and token are read once, as the real recovery gets them in its context.
  const holder = leader.holder;
  const token = leader.token;
  const acquisition = leader.acquisition;
  net.read(leader, 'recovery: list checkpoints', options.faults.storeError, () => store.epochs(), (listed) => {
    if (!listed.ok) return fail(listed.error);
    const visible = new Set(listed.value);
    net.read(leader, 'recovery: read decisions', options.faults.redisError, () => redis.all(), (all) => {
      if (!all.ok) return fail(all.error);
      const records = all.value.map((r) => ({ ...r }));
      const next = (i: number): void => {
        if (i === records.length) return done({ ok: true, value: decided(records, visible, report) });
        const record = records[i];
        if (record.state === 'started') {
          const state = options.variant === 'presume-commit' ? ('committed' as const) : ('aborted' as const);
          const update: SimDecisionRecord = {
            ...record,
            state,
            reason: 'presumed abort: the leader changed before the round was decided',
            leaderToken: token,
            atMs: world.scheduler.now,
            ghostAcquisition: acquisition,
          };
          net.call(leader, `recovery: record ${state} ${record.epoch}`, options.faults.redisError, options.faults.redisReplyLoss, () => redis.record(holder, update, world.scheduler.now), (result) => {
            if (!result.ok) return fail(result.error);
            if (result.value < 0) return fail(`recording ${state} of ${record.epoch} refused (${result.value})`);
            report.presumedAborted.push(record.epoch);
            record.state = state;
            next(i + 1);
          });
        } else if (record.state === 'committed' && record.commit && !visible.has(record.epoch)) {
          finish(world, leader, record, (problem, transient) => {
            // Only damage is final; anything else fails the recovery, which runs again.
            if (transient && !options.gaps.recoveryGivesUpOnTransientErrors) return fail(problem!);
            if (problem === undefined) {
              visible.add(record.epoch);
              report.finished.push(record.epoch);
            } else {
              report.unfinishable.push(record.epoch);
            }
            world.scheduler.log(`${leader.id} recovery: checkpoint ${record.epoch} ${problem === undefined ? 'finished' : `unfinishable: ${problem}`}`);
            next(i + 1);
          });
        } else {
          next(i + 1);
        }
      };
      next(0);
    });
  });
}

/** The recent rounds workers must hear of: visible commits and aborts. */
function decided(records: SimDecisionRecord[], visible: Set<number>, report: RecoveryReport): RecoveryReport {
  const newest = records.length > 0 ? records[records.length - 1].epoch : 0;
  for (const record of records) {
    if (!record.roundId || record.epoch <= newest - RESEND_EPOCHS) continue;
    if (record.state === 'committed' && visible.has(record.epoch)) report.decided.push({ epoch: record.epoch, roundId: record.roundId, outcome: 'committed' });
    if (record.state === 'aborted') report.decided.push({ epoch: record.epoch, roundId: record.roundId, outcome: 'aborted' });
  }
  return report;
}

/**
 * Rebuilds and writes the manifest of a committed epoch; `done` gets what failed, if anything, and
 * whether it was a transient store error rather than missing or mismatched staged data.
 */
function finish(world: World, leader: CoordinatorNode, record: SimDecisionRecord, done: (problem: string | undefined, transient: boolean) => void): void {
  const { net, store, options } = world;
  const commit = record.commit!;
  const partitions: VotedPartition[] = [];
  const read = (i: number): void => {
    if (i === commit.partitions.length) {
      const manifest = assembleManifest(record.epoch, commit, record.atMs, partitions);
      net.call(leader, `recovery: put manifest ${record.epoch}`, options.faults.storeError, 0, () => store.putManifest(manifest, leader.id), (put) => done(put.ok ? undefined : put.error, !put.ok));
      return;
    }
    const p = commit.partitions[i];
    net.read(leader, `recovery: get ${p.key}`, options.faults.storeError, () => store.partitions.get(p.key), (got) => {
      // Missing (NotFoundError) or not the bytes the worker voted with (CorruptDataError): final.
      if (!got.ok) return done(got.error, true);
      if (!got.value) return done(`${p.key} is missing`, false);
      if (got.value.sha256 !== p.sha256) return done(`${p.key} is not what ${p.workerId} voted with`, false);
      partitions.push({ workerId: p.workerId, queues: got.value.queues });
      read(i + 1);
    });
  };
  read(0);
}
