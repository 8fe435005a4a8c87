/**
 * Runs the real recovery (services/coordinator/recovery-plan.ts RecoveryPlan, the machine
 * recovery.ts executes) against the simulated Redis and store, each call a simulated call that
 * can fail. Only the I/O is here; every decision (which epoch to presume aborted and with what
 * record, which to finish, the checksum check, the manifest, which errors are final, which
 * decisions to re-send) is the shipped code's. A new leader runs it before its first round, and a
 * leader runs it again while a round of its own is in doubt (coordinator-node.ts).
 *
 * Like recovery.ts: one listing of the store, then the whole decision log; a refused or failed
 * write fails the whole recovery. Staged partitions are read one after the other (recovery.ts
 * reads them in parallel), so the first that fails decides.
 *
 * Faults injected into the shipped path (never a copy of it):
 * - variant `presume-commit`: the `record` step's record is turned to `committed` before it is
 *   written, and the plan is told that is what landed;
 * - KnownGaps `recoveryGivesUpOnTransientErrors`: a transient store error while finishing is
 *   reported to the plan as final (`unfinishable`), as the old recovery.ts did.
 */
import { CorruptDataError, errorMessage, NotFoundError, ObjectNotFoundError } from '../../services/core/errors.js';
import type { VotedPartition } from '../../services/coordinator/checkpoint-round.js';
import { countedByWorker } from '../../services/coordinator/outside-cut.js';
import type { CheckpointManifest } from '../../services/gen/tidemark/v1/store.js';
import { isFinalFinishError, RecoveryPlan, stagedMismatch, type RecoveryReport, type RecoveryStep } from '../../services/coordinator/recovery-plan.js';
import type { CoordinatorNode } from './coordinator-node.js';
import type { SimDecisionRecord } from './redis.js';
import type { Result } from './worker-node.js';
import type { World } from './world.js';

export type { RecoveryReport };

export function recoverRounds(world: World, leader: CoordinatorNode, done: (result: Result<RecoveryReport>) => void): void {
  const { net, redis, store, options, scheduler } = world;
  const fail = (error: string) => done({ ok: false, error });
  // The holder and token are read once, as the real recovery gets them in its context.
  const holder = leader.holder;
  const token = leader.token;
  const acquisition = leader.acquisition;
  net.read(leader, 'recovery: list checkpoints', options.faults.storeError, () => store.epochs(), (listed) => {
    if (!listed.ok) return fail(listed.error);
    net.read(leader, 'recovery: read decisions', options.faults.redisError, () => redis.all(), (all) => {
      if (!all.ok) return fail(all.error);
      const plan = new RecoveryPlan(all.value, listed.value, token);
      const next = (): void => {
        const step = plan.step(scheduler.now);
        if (!step) return counted(0);
        if (step.kind === 'record') {
          if (options.variant === 'presume-commit') step.record.state = 'committed';
          const update: SimDecisionRecord = { ...step.record, roundId: step.record.roundId!, ghostAcquisition: acquisition };
          net.call(leader, `recovery: record ${update.state} ${step.epoch}`, options.faults.redisError, options.faults.redisReplyLoss, () => redis.record(holder, update, scheduler.now), (result) => {
            if (!result.ok) return fail(result.error);
            if (result.value < 0) return fail(`recording ${update.state} of ${step.epoch} refused (${result.value})`);
            plan.recorded(step);
            next();
          });
          return;
        }
        finish(world, leader, plan, step, (err) => {
          if (err === undefined && step.parentEpoch > 0) world.stats.finishedCarrying += 1;
          if (err === undefined) plan.finished(step);
          else if (isFinalFinishError(err) || options.gaps.recoveryGivesUpOnTransientErrors) plan.unfinishable(step);
          else return fail(errorMessage(err));
          scheduler.log(`${leader.id} recovery: checkpoint ${step.epoch} ${err === undefined ? 'finished' : `unfinishable: ${errorMessage(err)}`}`);
          next();
        });
      };
      // recovery.ts: a partial commit's workers hear what its visible manifest counted of their votes.
      const counted = (i: number): void => {
        const round = plan.report.decided[i];
        if (!round) return done({ ok: true, value: plan.report });
        if (!round.partial) return counted(i + 1);
        net.read(leader, `recovery: read manifest ${round.epoch}`, options.faults.storeError, () => store.manifests.get(round.epoch), (read) => {
          if (!read.ok) return fail(read.error);
          if (!read.value) return fail(`checkpoint ${round.epoch} does not exist`);
          round.counted = countedByWorker(read.value);
          counted(i + 1);
        });
      };
      next();
    });
  });
}

/** Reads, checks and publishes a `finish` step; `done` gets what failed, if anything. */
function finish(world: World, leader: CoordinatorNode, plan: RecoveryPlan, step: Extract<RecoveryStep, { kind: 'finish' }>, done: (err: unknown) => void): void {
  const { net, store, options } = world;
  const partitions: VotedPartition[] = [];
  const read = (i: number): void => {
    if (i === step.commit.partitions.length) {
      // recovery.ts: a round that carried queues (G8) is assembled with its parent's entries.
      if (step.parentEpoch === 0) return publish(undefined);
      net.read(leader, `recovery: get manifest ${step.parentEpoch}`, options.faults.storeError, () => store.manifests.get(step.parentEpoch), (got) => {
        if (!got.ok) return done(new Error(got.error));
        if (!got.value) return done(new NotFoundError(`checkpoint ${step.parentEpoch} does not exist`));
        publish(got.value);
      });
      return;
    }
    const p = step.commit.partitions[i];
    net.read(leader, `recovery: get ${p.key}`, options.faults.storeError, () => store.partitions.get(p.key), (got) => {
      if (!got.ok) return done(new Error(got.error));
      if (!got.value) return done(new ObjectNotFoundError(p.key, 'sim'));
      const mismatch = stagedMismatch(p, got.value.sha256);
      if (mismatch) return done(new CorruptDataError(mismatch, p.key));
      partitions.push({ workerId: p.workerId, queues: got.value.queues });
      read(i + 1);
    });
  };
  const publish = (parent: CheckpointManifest | undefined): void => {
    let manifest: CheckpointManifest;
    try {
      manifest = plan.manifest(step, partitions, parent);
    } catch (err) {
      return done(err);
    }
    net.call(leader, `recovery: put manifest ${step.epoch}`, options.faults.storeError, 0, () => store.putManifest(manifest, leader.id), (put) => done(put.ok ? undefined : new Error(put.error)));
  };
  read(0);
}
