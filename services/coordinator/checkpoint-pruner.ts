/**
 * The leader's retention and garbage collection: `tidemark checkpoints prune` and `delete`, and a
 * prune after commits, at most once per `pruneInterval` and one at a time, off the round path (a
 * round never waits for it). It also gives consolidation the history floor (how far back new
 * full manifests keep history). What is deleted and why: checkpoint-retention.ts, store-gc.ts.
 */
import type { QueueCheckpoint } from '../gen/tidemark/v1/store.js';
import { type Catalog, type Clock, type Config, type DecisionLog, errorMessage, type Logger, type QueueHead, RestoreStateStore } from '../core/index.js';
import type { ObjectStore } from '../core/store/index.js';
import type { Redis } from 'ioredis';
import { gcGraceMs, historyFloorEpoch, type Protection, type RetentionDecision, type RetentionPolicy } from './checkpoint-retention.js';
import { decide, deleteCheckpoint, openEpochsOf, type PruneReport, pruneStore, type StoreGcDeps } from './store-gc.js';
import { readVerified } from './verified-marker.js';

/** Restores that may still read their checkpoint: running, or stopped and resumable. */
const RESUMABLE = new Set(['running', 'interrupted', 'failed']);

export function retentionPolicyOf(config: Config): RetentionPolicy {
  return {
    keepLast: config.retainLast,
    keepWithinMs: config.retainWithin,
    keepDaily: config.retainDaily,
    keepWeekly: config.retainWeekly,
    keepMonthly: config.retainMonthly,
    historyMs: config.retainHistory,
  };
}

export interface CheckpointPrunerParts {
  config: Config;
  store: ObjectStore;
  catalog: Catalog;
  redis: Redis;
  decisions: DecisionLog;
  clock: Clock;
  log: Logger;
  /** False once leadership is lost: an automatic prune does not start. */
  isLeader: () => boolean;
  /** COMMITs a worker may still apply (decisions-in-flight.ts): their checkpoints are kept. */
  decisionsInFlight: () => Protection[];
  /** Segment prefixes of the queues protected now; unknown before the first discovery pass. */
  protectedQueues?: () => ReadonlySet<string> | undefined;
  /** The leader's work queue (LeaderScheduler.enqueue): manifest deletions run between rounds. */
  exclusive: <T>(work: () => Promise<T>) => Promise<T>;
}

export class CheckpointPruner {
  private running: Promise<unknown> = Promise.resolve();
  private lastAutoMs = -Infinity;
  private readonly deps: StoreGcDeps;
  readonly policy: RetentionPolicy;

  constructor(private readonly parts: CheckpointPrunerParts) {
    this.policy = retentionPolicyOf(parts.config);
    const restores = new RestoreStateStore(parts.redis, parts.config.namespace);
    this.deps = {
      store: parts.store,
      catalog: parts.catalog,
      clock: parts.clock,
      log: parts.log.child('gc'),
      protections: async () => {
        const protections: Protection[] = [...parts.decisionsInFlight()];
        const verified = await readVerified(parts.store).catch((err: unknown) => {
          throw new Error(`cannot read the verified marker, so nothing is pruned: ${errorMessage(err)}`, { cause: err });
        });
        if (verified) protections.push({ epoch: verified.epoch, reason: 'newest verified checkpoint' });
        for (const r of await restores.list(1_000)) if (RESUMABLE.has(r.state)) protections.push({ epoch: r.checkpoint, reason: `checkpoint of restore ${r.id} (${r.state})` });
        return protections;
      },
      openEpochs: async (visible) => openEpochsOf(await parts.decisions.all(), visible),
      stillLeader: parts.isLeader,
      forgetDecisions: (epochs) => parts.decisions.forget(epochs),
      exclusive: parts.exclusive,
      protectedQueues: () => parts.protectedQueues?.() ?? undefined,
    };
  }

  get graceMs(): number {
    return gcGraceMs(this.parts.config.gcGrace, this.parts.config.prepareTimeout);
  }

  /** Prune now (retention, then GC), after any prune in progress. */
  prune(dryRun: boolean): Promise<PruneReport> {
    return this.serial(() => pruneStore(this.deps, { policy: this.policy, graceMs: this.graceMs, dryRun }));
  }

  /** What a prune now would keep (with why) and delete, for the status page; deletes nothing. */
  plan(): Promise<RetentionDecision> {
    return decide(this.deps, { policy: this.policy, graceMs: this.graceMs });
  }

  /** Delete one checkpoint by hand; refuses a protected one (CheckpointProtectedError). */
  delete(epoch: number): Promise<void> {
    return this.serial(() => deleteCheckpoint(this.deps, epoch, this.graceMs));
  }

  /** After a commit: prune in the background if `pruneInterval` has passed since the last one. */
  afterCommit(): void {
    const every = this.parts.config.pruneInterval;
    const now = this.parts.clock.now();
    if (every <= 0 || now - this.lastAutoMs < every || !this.parts.isLeader()) return;
    this.lastAutoMs = now;
    void this.prune(false).catch((err: unknown) => this.parts.log.warn('automatic prune failed (the next one retries; nothing unsafe was left)', { err: errorMessage(err) }));
  }

  /**
   * For consolidation: where each queue's history may begin in a new full manifest: the cut of
   * the newest checkpoint committed at least `retainHistory` ago (never past the head:
   * Catalog.consolidate). Undefined when all history is kept.
   */
  async historyFrom(visibleEpochs: number[]): Promise<((entry: QueueCheckpoint) => QueueHead | undefined) | undefined> {
    if (this.policy.historyMs <= 0) return undefined;
    const facts = [];
    for (const epoch of visibleEpochs) {
      const m = await this.parts.catalog.get(epoch).catch(() => undefined);
      if (m) facts.push({ epoch, committedAtMs: m.committedAtMs, bases: [] });
    }
    const floor = historyFloorEpoch(facts, this.policy.historyMs, this.parts.clock.now());
    if (floor === 0) return undefined;
    const manifest = await this.parts.catalog.get(floor);
    return (entry) => {
      const old = manifest.queues.find((q) => q.definition?.vhost === entry.definition?.vhost && q.definition?.name === entry.definition?.name);
      if (!old || old.startOffset !== entry.startOffset || old.cutOffset > entry.cutOffset) return undefined;
      return { offset: old.cutOffset, messages: old.messages };
    };
  }

  private serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.running.then(work, work);
    this.running = next.catch(() => undefined);
    return next;
  }
}
