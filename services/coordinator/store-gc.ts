/**
 * Pruning and garbage collection of the store: retention (checkpoint-retention.ts) says which
 * checkpoints stay; this deletes the others, then every object no remaining checkpoint needs.
 *
 * Safe under a crash at any step, and beside concurrent rounds and restores, by its order:
 * 1. as one piece of leader work, between rounds and recovery: decide, then delete the manifests
 *    retention dropped, newest first (no kept manifest references them: bases of kept checkpoints
 *    are kept, so every kept chain stays whole);
 * 2. list the store again and sweep: delete a segment only when no remaining manifest and no
 *    staged partition that may still become one lists it, it is older than the grace period (a
 *    capture may have just written it for a vote not cast yet), and it lies wholly below its
 *    queue's cut in the latest checkpoint (what capture holds for the next round is above it).
 *    No segment is swept unless a checkpoint was committed within the grace period: while rounds
 *    fail, captured segments wait in no manifest for longer than that.
 *    Staged partitions go when their epoch is below the latest visible one, not the newest staged
 *    epoch (the epoch floor after a Redis loss), not a round the decision log has open or
 *    committed without a manifest, and older than the grace period.
 * A crash between steps leaves only unreferenced objects, which the next pass sweeps. Nothing is
 * rewritten: a full manifest lists only the segments its checkpoint needs when it is written
 * (Catalog.consolidate), so once older checkpoints go, so do the segments only they needed.
 *
 * sweepPlan is pure, so the simulation (test/sim) runs the very rules against its store.
 */
import type { CheckpointManifest, QueueCheckpoint } from '../gen/tidemark/v1/store.js';
import { type Catalog, type Clock, errorMessage, failpoint, isFenceRange, LeadershipLostError, type Logger } from '../core/index.js';
import {
  checkpointKey,
  decodePartition,
  MAX_MANIFEST_BYTES,
  type ObjectStore,
  parseStagingKey,
  SEGMENTS_PREFIX,
  segmentPrefix,
  STAGING_PREFIX,
  type StoredObject,
} from '../core/store/index.js';
import { deletionBlockers, factsOf, type Protection, type RetentionDecision, type RetentionPolicy, retentionPlan } from './checkpoint-retention.js';
import { CheckpointProtectedError } from './errors.js';

export interface SweepInput {
  /** Every manifest visible after step 1. */
  manifests: CheckpointManifest[];
  /** The listing of `segments/`. */
  segments: StoredObject[];
  /** The listing of `staging/`. */
  staging: StoredObject[];
  /** Segment keys listed by staged partitions that may still become visible. */
  stagedRefs: ReadonlySet<string>;
  /** Epochs the decision log holds as started, or committed without a visible manifest. */
  openEpochs: ReadonlySet<number>;
  /** The newest epoch any partition is staged for (Catalog.newestStaged). */
  newestStaged: number;
  nowMs: number;
  graceMs: number;
  /**
   * Segment prefixes (segmentPrefix) of the queues still protected. A queue the latest checkpoint
   * does not hold may still be captured (left out of its round, G8): its segments are swept only
   * when this set is given and lacks it. Absent: never.
   */
  protectedQueues?: ReadonlySet<string>;
}

export interface SweepPlan {
  segments: StoredObject[];
  staging: StoredObject[];
  /** Why segments were not swept at all, if they were not. */
  skipped?: string;
}

const SEGMENT_NAME = /^(\d{20})-(\d{20})-[0-9a-f]{16}\.seg$/;
/**
 * `segments/<vhost>/<queue>/<name>` with both parts as encodeKeyPart writes them. A listing from a
 * server that decodes keys it should not (s3rver ignores encoding-type=url, so `%2F` comes back as
 * `/`) gives keys that are not ours; those are never deleted.
 */
const SEGMENT_KEY = /^segments\/((?:[A-Za-z0-9\-_.!~*'()~]|%[0-9A-F]{2})+)\/((?:[A-Za-z0-9\-_.!~*'()~]|%[0-9A-F]{2})+)\/[^/]+$/;

/** The segment keys a manifest lists (fence ranges name no object). */
export function referencedKeys(manifests: Iterable<{ queues: QueueCheckpoint[] }>): Set<string> {
  const keys = new Set<string>();
  for (const m of manifests) for (const q of m.queues) for (const s of q.segments) if (!isFenceRange(s)) keys.add(s.key);
  return keys;
}

/** What the sweep (step 2) deletes. */
export function sweepPlan(input: SweepInput): SweepPlan {
  const { nowMs, graceMs } = input;
  const old = (o: StoredObject) => o.lastModifiedMs < nowMs - graceMs;
  const newest = input.manifests.reduce<CheckpointManifest | undefined>((a, m) => (!a || m.epoch > a.epoch ? m : a), undefined);
  const staging = input.staging.filter((o) => {
    const epoch = parseStagingKey(o.key);
    return epoch !== undefined && newest !== undefined && epoch < newest.epoch && epoch !== input.newestStaged && !input.openEpochs.has(epoch) && old(o);
  });
  if (!newest) return { segments: [], staging, skipped: 'no checkpoint is visible' };
  if (newest.committedAtMs < nowMs - graceMs) {
    return { segments: [], staging, skipped: `no checkpoint was committed within the grace period (${graceMs} ms): segments captured since may be in no manifest yet` };
  }
  const referenced = referencedKeys(input.manifests);
  const cuts = new Map<string, number>();
  for (const q of newest.queues) cuts.set(segmentPrefix(q.definition!.vhost, q.definition!.name), q.cutOffset);
  const segments = input.segments.filter((o) => {
    if (referenced.has(o.key) || input.stagedRefs.has(o.key) || !old(o)) return false;
    const slash = o.key.lastIndexOf('/');
    const name = SEGMENT_NAME.exec(o.key.slice(slash + 1));
    if (!SEGMENT_KEY.test(o.key) || !name) return false;
    const prefix = o.key.slice(0, slash + 1);
    const cut = cuts.get(prefix);
    // A queue the latest checkpoint does not hold is gone only if it is no longer protected: one
    // left out of its rounds (G8) is still captured, and its segments wait for its first checkpoint.
    if (cut === undefined) return input.protectedQueues !== undefined && !input.protectedQueues.has(prefix);
    return Number(name[2]) < cut;
  });
  return { segments, staging };
}

export interface StoreGcDeps {
  store: ObjectStore;
  catalog: Catalog;
  clock: Clock;
  log: Logger;
  /** Held by something the store does not show: the newest verified checkpoint, running restores. */
  protections: () => Promise<Protection[]>;
  /** Epochs the decision log holds as started, or committed without a visible manifest. */
  openEpochs: (visible: ReadonlySet<number>) => Promise<Set<number>>;
  /**
   * Drops the decision records of checkpoints about to be deleted, so that no recovery writes
   * their manifests again from staged partitions (DecisionLog.forget).
   */
  forgetDecisions: (epochs: number[]) => Promise<void>;
  /** Runs manifest deletions one at a time with the leader's rounds and recovery (LeaderScheduler.enqueue). */
  exclusive: <T>(work: () => Promise<T>) => Promise<T>;
  /** Checked before each deletion: a deposed leader's view of the store is stale. */
  stillLeader: () => boolean;
  /** Segment prefixes of the queues protected now (SweepInput.protectedQueues); absent: unknown. */
  protectedQueues?: () => ReadonlySet<string> | undefined;
}

/** Epochs the decision log holds as started, or as committed without a visible manifest (pure). */
export function openEpochsOf(records: Iterable<{ epoch: number; state: string }>, visible: ReadonlySet<number>): Set<number> {
  const open = new Set<number>();
  for (const d of records) if (d.state === 'started' || (d.state === 'committed' && !visible.has(d.epoch))) open.add(d.epoch);
  return open;
}

/**
 * The staged partitions whose segments the sweep must keep (pure): those that may still become a
 * manifest, above the latest visible epoch or of an open round.
 */
export function partitionsToKeep(staging: StoredObject[], latest: number, openEpochs: ReadonlySet<number>): StoredObject[] {
  return staging.filter((o) => {
    const epoch = parseStagingKey(o.key);
    return epoch !== undefined && (epoch > latest || openEpochs.has(epoch));
  });
}

/** The newest epoch a listing of `staging/` holds a partition for (Catalog.newestStaged, pure). */
export function newestStagedOf(staging: StoredObject[]): number {
  let newest = 0;
  for (const o of staging) newest = Math.max(newest, parseStagingKey(o.key) ?? 0);
  return newest;
}

/** Thrown between deletions when leadership was lost: the rest waits for the next leader's prune. */
function checkLeader(deps: StoreGcDeps): void {
  if (!deps.stillLeader()) throw new LeadershipLostError('garbage collection stopped: this coordinator is no longer the leader; the next leader prunes again');
}

export interface PruneOptions {
  policy: RetentionPolicy;
  graceMs: number;
  /** Say what would be deleted, delete nothing. */
  dryRun: boolean;
}

export interface PruneReport {
  dryRun: boolean;
  kept: RetentionDecision['keep'];
  /** Checkpoints deleted (or, in a dry run, that would be). */
  deleted: number[];
  segmentsDeleted: number;
  stagedDeleted: number;
  bytesFreed: number;
  /** Why segments were not swept, if they were not. */
  sweepSkipped: string;
}

/** Prune (retention, then GC) once. Callers run one at a time (the leader's scheduler). */
export async function pruneStore(deps: StoreGcDeps, options: PruneOptions): Promise<PruneReport> {
  const { store, log } = deps;
  // A first look outside the leader's work queue: most passes drop nothing and need not hold
  // rounds up. What is deleted is decided again as leader work, right before deleting: a round
  // that ran since the look may have made an older checkpoint the base of a new one (a worker
  // that had not learned a newer COMMIT votes with its older base).
  const look = await decide(deps, options);
  const decision =
    options.dryRun || look.drop.length === 0
      ? look
      : await deps.exclusive(async () => {
          const decided = await decide(deps, options);
          await deleteManifests(deps, decided.drop);
          return decided;
        });
  const report: PruneReport = { dryRun: options.dryRun, kept: decision.keep, deleted: decision.drop, segmentsDeleted: 0, stagedDeleted: 0, bytesFreed: 0, sweepSkipped: '' };
  if (!options.dryRun) {
    if (decision.drop.length > 0) log.info('retention deleted checkpoints', { checkpoints: decision.drop.length, first: decision.drop[0], last: decision.drop[decision.drop.length - 1] });
    await failpoint('gc.after-manifest-deletes');
  }
  const dropped = new Set(options.dryRun ? decision.drop : []);
  const plan = await planSweep(deps, options.graceMs, dropped);
  report.sweepSkipped = plan.skipped ?? '';
  for (const object of [...plan.segments, ...plan.staging]) report.bytesFreed += object.size;
  report.segmentsDeleted = plan.segments.length;
  report.stagedDeleted = plan.staging.length;
  if (options.dryRun) return report;
  let first = true;
  for (const object of plan.segments) {
    checkLeader(deps);
    await store.delete(object.key);
    if (first) await failpoint('gc.mid-sweep');
    first = false;
  }
  for (const object of plan.staging) {
    checkLeader(deps);
    await store.delete(object.key);
  }
  if (plan.segments.length + plan.staging.length > 0) {
    log.info('garbage collection deleted objects', { segments: plan.segments.length, staged: plan.staging.length, bytes: report.bytesFreed });
  }
  return report;
}

/** Deletes one checkpoint by hand, unless a protection holds it (CheckpointProtectedError). */
export async function deleteCheckpoint(deps: StoreGcDeps, epoch: number, graceMs: number): Promise<void> {
  await deps.exclusive(async () => {
    const manifests = await visibleManifests(deps.catalog);
    if (!manifests.some((m) => m.epoch === epoch)) await deps.catalog.get(epoch); // NotFoundError naming the store
    const blockers = deletionBlockers(epoch, { checkpoints: manifests.map(factsOf), protections: await deps.protections(), graceMs, nowMs: deps.clock.now() });
    if (blockers.length > 0) throw new CheckpointProtectedError(epoch, blockers);
    await deleteManifests(deps, [epoch]);
  });
  deps.log.info('checkpoint deleted by request', { epoch });
}

/**
 * Step 1 (as leader work, LeaderScheduler.enqueue, with the decision that picked the epochs): the
 * decision records go first. A crash after that leaves a checkpoint visible whose record is gone,
 * which is harmless (the store says what is visible); the other order could let a recovery write
 * a deleted manifest back. Newest first: a base (always an older epoch) goes only after every
 * checkpoint read through it, so every checkpoint still visible at any moment reads back whole.
 */
async function deleteManifests(deps: StoreGcDeps, epochs: number[]): Promise<void> {
  if (epochs.length === 0) return;
  checkLeader(deps);
  await deps.forgetDecisions(epochs);
  for (const epoch of [...epochs].sort((a, b) => b - a)) {
    checkLeader(deps);
    await deps.store.delete(checkpointKey(epoch));
    deps.catalog.forget(epoch);
  }
}

/** What retention keeps (and why) and may delete now, with every protection a prune applies; deletes nothing. */
export async function decide(deps: StoreGcDeps, options: Pick<PruneOptions, 'policy' | 'graceMs'>): Promise<RetentionDecision> {
  const manifests = await visibleManifests(deps.catalog);
  return retentionPlan({ checkpoints: manifests.map(factsOf), policy: options.policy, protections: await deps.protections(), graceMs: options.graceMs, nowMs: deps.clock.now() });
}

async function planSweep(deps: StoreGcDeps, graceMs: number, dropped: ReadonlySet<number>): Promise<SweepPlan> {
  const { store, catalog } = deps;
  // Listed after the manifests went: a round that commits meanwhile lists only segments that are
  // recent, above the latest cut, or held by a kept chain.
  const staging = await store.listObjects(STAGING_PREFIX);
  const segments = await store.listObjects(SEGMENTS_PREFIX);
  const manifests = (await visibleManifests(catalog)).filter((m) => !dropped.has(m.epoch));
  const visible = new Set(manifests.map((m) => m.epoch));
  const latest = Math.max(0, ...visible);
  const openEpochs = await deps.openEpochs(visible);
  const stagedRefs = new Set<string>();
  for (const o of partitionsToKeep(staging, latest, openEpochs)) {
    const partition = await decodePartition(await store.get(o.key, { maxBytes: MAX_MANIFEST_BYTES }), o.key, store.vault).catch((err: unknown) => {
      deps.log.warn('garbage collection cannot read a staged partition; no segment is swept this pass', { object: o.key, err: errorMessage(err) });
      return 'unreadable' as const;
    });
    if (partition === 'unreadable') return { segments: [], staging: [], skipped: `staged partition ${o.key} could not be read` };
    for (const key of referencedKeys([partition])) stagedRefs.add(key);
  }
  return sweepPlan({ manifests, segments, staging, stagedRefs, openEpochs, newestStaged: newestStagedOf(staging), nowMs: deps.clock.now(), graceMs, protectedQueues: deps.protectedQueues?.() });
}

async function visibleManifests(catalog: Catalog): Promise<CheckpointManifest[]> {
  const epochs = await catalog.epochs();
  const manifests: CheckpointManifest[] = [];
  for (const epoch of epochs) {
    // Deleted by another pass between the listing and the read: it is simply gone.
    const manifest = await catalog.get(epoch).catch((err: unknown) => {
      if ((err as Error).name === 'NotFoundError') return undefined;
      throw err;
    });
    if (manifest) manifests.push(manifest);
  }
  return manifests;
}

