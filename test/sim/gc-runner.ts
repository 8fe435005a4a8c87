/**
 * Runs the real retention and garbage collection (services/coordinator/checkpoint-retention.ts
 * retentionPlan, store-gc.ts sweepPlan and its pure helpers) against the simulated store and
 * Redis, each read and delete a simulated call that can fail, with the leader able to crash
 * between any two steps (at rate `crashInRound`, like the GC failpoints of the real matrix). Only
 * the I/O is here; what is kept and what is deleted is the shipped code's. The order is
 * store-gc.ts pruneStore's:
 *
 * 1. and 2. as one piece of leader work (never inside a round or recovery,
 *    LeaderScheduler.enqueue): list the manifests; retentionPlan picks what to drop; the leader
 *    check, the decision records of the dropped epochs forgotten, then each manifest deleted,
 *    newest first, with the leader check before each;
 * 3. list staging/, then segments/, then the manifests and the decision log again; read the
 *    partitions that may still become manifests; sweepPlan; delete each segment, then each
 *    staged partition, with the leader check before each.
 *
 * Broken variants (options.ts), here only: `gc-deletes-bases` hands retentionPlan no base chains;
 * `gc-without-grace` sweeps every unreferenced segment at once (no grace, no cut floor).
 */
import { factsOf, gcGraceMs, retentionPlan, type RetentionPolicy } from '../../services/coordinator/checkpoint-retention.js';
import { newestStagedOf, openEpochsOf, partitionsToKeep, referencedKeys, sweepPlan } from '../../services/coordinator/store-gc.js';
import type { StoredObject } from '../../services/core/store/object-store.js';
import { segmentPrefix } from '../../services/core/store/keys.js';
import type { CheckpointManifest } from '../../services/gen/tidemark/v1/store.js';
import type { CoordinatorNode } from './coordinator-node.js';
import type { World } from './world.js';

const NO_RULES: RetentionPolicy = { keepLast: 0, keepWithinMs: 0, keepDaily: 0, keepWeekly: 0, keepMonthly: 0, historyMs: 0 };

export function runGc(world: World, leader: CoordinatorNode, done: () => void): void {
  const { net, store, redis, options, scheduler, random } = world;
  const f = options.faults;
  const graceMs = gcGraceMs(options.retention.gcGraceMs, options.prepareTimeoutMs);
  const life = leader.incarnation;
  const alive = () => leader.up && leader.incarnation === life;
  /** Before a deletion: the leader may crash there (a GC failpoint's crash), or have lost the lease. */
  const step = (then: () => void) => {
    if (!alive()) return;
    if (net.faulty && random.chance(f.crashInRound)) return world.crash(leader);
    if (!leader.stillLeader()) {
      scheduler.log(`${leader.id} gc: no longer the leader, stopping`);
      return done();
    }
    then();
  };
  const stop = (why: string) => {
    scheduler.log(`${leader.id} gc stopped: ${why}`);
    done();
  };

  const sweep = () => (alive() ? sweepStore(world, leader, graceMs, step, stop, done) : undefined);
  const plan = (manifests: CheckpointManifest[]) => {
    const checkpoints = manifests.map(factsOf).map((c) => (options.variant === 'gc-deletes-bases' ? { ...c, bases: [] } : c));
    return retentionPlan({ checkpoints, policy: { ...NO_RULES, keepLast: options.retention.keepLast }, protections: leader.decisionProtections(), graceMs, nowMs: scheduler.now });
  };
  // A first look outside the leader's queue: most passes drop nothing and hold no round up.
  net.read(leader, 'gc: look at checkpoints', f.storeError, () => [...store.manifests.values()], (looked) => {
    if (!looked.ok) return stop(looked.error);
    if (plan(looked.value).drop.length === 0) return sweep();
    deleteDropped();
  });
  // Steps 1 and 2 as one piece of leader work (store-gc.ts pruneStore): a round that ran since
  // the first look may have made an older checkpoint the base of a new one.
  const deleteDropped = () => leader.exclusive((release) => {
    const finish = (why?: string) => {
      release();
      if (why !== undefined) return stop(why);
      sweep();
    };
    net.read(leader, 'gc: list checkpoints', f.storeError, () => [...store.manifests.values()], (listed) => {
      if (!listed.ok) return finish(listed.error);
      const decision = plan(listed.value);
      // Newest first, as store-gc.ts deleteManifests: bases go after what is read through them.
      const drop = [...decision.drop].sort((a, b) => b - a);
      if (drop.length === 0) return finish();
      step(() => {
        net.call(leader, `gc: forget decisions ${drop.join(',')}`, f.redisError, f.redisReplyLoss, () => redis.forget(drop, scheduler.now), (forgot) => {
          if (!forgot.ok) return finish(forgot.error);
          const next = (i: number): void => {
            if (i === drop.length) return finish();
            step(() => {
              net.call(leader, `gc: delete manifest ${drop[i]}`, f.storeError, 0, () => store.deleteManifest(drop[i], leader.id), (deleted) => {
                if (!deleted.ok) return finish(deleted.error);
                next(i + 1);
              });
            });
          };
          next(0);
        });
      });
    });
  });
}

/** Step 3: list, plan the sweep with the real sweepPlan, delete one object per call. */
function sweepStore(world: World, leader: CoordinatorNode, graceMs: number, step: (then: () => void) => void, stop: (why: string) => void, done: () => void): void {
  // Every simulated queue stays protected: one left out of its rounds (G8) keeps its segments.
  const protectedQueues = new Set(world.queues.map((q) => segmentPrefix(q.vhost, q.name)));
  const { net, store, redis, options, scheduler } = world;
  const f = options.faults;
  net.read(leader, 'gc: list staging', f.storeError, () => store.stagedObjects(), (staging) => {
    if (!staging.ok) return stop(staging.error);
    net.read(leader, 'gc: list segments', f.storeError, () => store.segmentObjects(), (segments) => {
      if (!segments.ok) return stop(segments.error);
      net.read(leader, 'gc: list checkpoints again', f.storeError, () => [...store.manifests.values()], (manifests) => {
        if (!manifests.ok) return stop(manifests.error);
        net.read(leader, 'gc: read decisions', f.redisError, () => redis.all(), (records) => {
          if (!records.ok) return stop(records.error);
          const visible = new Set(manifests.value.map((m) => m.epoch));
          const openEpochs = openEpochsOf(records.value, visible);
          const keep = partitionsToKeep(staging.value, Math.max(0, ...visible), openEpochs);
          net.read(leader, 'gc: read staged partitions', f.storeError, () => keep.map((o) => store.partitions.get(o.key)), (partitions) => {
            if (!partitions.ok) return stop(partitions.error);
            const stagedRefs = referencedKeys(partitions.value.filter((p) => p !== undefined));
            const plan =
              options.variant === 'gc-without-grace'
                ? unreferenced(manifests.value, segments.value, stagedRefs)
                : sweepPlan({ manifests: manifests.value, segments: segments.value, staging: staging.value, stagedRefs, openEpochs, newestStaged: newestStagedOf(staging.value), nowMs: scheduler.now, graceMs, protectedQueues });
            const objects = [...plan.segments, ...plan.staging];
            const next = (i: number): void => {
              if (i === objects.length) return done();
              step(() => {
                net.call(leader, `gc: delete ${objects[i].key}`, f.storeError, 0, () => store.deleteObject(objects[i].key, leader.id), (deleted) => {
                  if (!deleted.ok) return stop(deleted.error);
                  next(i + 1);
                });
              });
            };
            next(0);
          });
        });
      });
    });
  });
}

/** Broken (`gc-without-grace`): every segment no manifest or staged partition lists, whatever its age or offsets. */
function unreferenced(manifests: CheckpointManifest[], segments: StoredObject[], stagedRefs: ReadonlySet<string>): { segments: StoredObject[]; staging: StoredObject[] } {
  const referenced = referencedKeys(manifests);
  return { segments: segments.filter((o) => !referenced.has(o.key) && !stagedRefs.has(o.key)), staging: [] };
}
