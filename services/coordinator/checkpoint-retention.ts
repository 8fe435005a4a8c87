/**
 * Retention (pure: no I/O, the clock is a parameter): which visible checkpoints to keep, and why.
 * A checkpoint is kept when any rule of the policy keeps it or any protection holds it; every
 * other one may be deleted. store-gc.ts deletes them and then the objects nothing kept needs.
 *
 * Protections hold whatever the policy says (docs/OPERATIONS.md#retention-and-garbage-collection):
 * - the latest visible checkpoint: the next round's parent, and the base workers build on;
 * - checkpoints committed within the grace period: an in-flight round, or a worker that has not
 *   learned a newer COMMIT yet, may still vote with one of them as a queue's base (checkYes
 *   aborts a round whose base is not visible);
 * - the newest checkpoint that passed `tidemark verify` (verified-marker.ts);
 * - a checkpoint a running restore reads;
 * - the base of any kept checkpoint, down its chain: a kept incremental entry is read through its
 *   base_epoch links, so they stay visible as long as it does. The leader writes a full manifest
 *   at least every `fullEvery` epochs, so chains, and with them what bases hold, stay short.
 */
import type { CheckpointManifest } from '../gen/tidemark/v1/store.js';

/** What to keep. A checkpoint kept by any rule is kept; 0 turns a rule off. */
export interface RetentionPolicy {
  /** Keep the newest N checkpoints. @default 100 */
  keepLast: number;
  /** Keep every checkpoint committed within this many ms of now. @default 7 days */
  keepWithinMs: number;
  /** Keep the newest checkpoint of each of the last D UTC days that have one. @default 7 */
  keepDaily: number;
  /** Keep the newest checkpoint of each of the last W ISO weeks (Monday to Sunday, UTC) that have one. @default 4 */
  keepWeekly: number;
  /** Keep the newest checkpoint of each of the last M UTC calendar months that have one. @default 12 */
  keepMonthly: number;
  /**
   * How long history is kept for `restore --history`: records captured before the newest
   * checkpoint committed at least this long ago may be dropped from new full manifests, down to
   * each queue's head. 0 keeps all history. @default 7 days
   */
  historyMs: number;
}

/** One visible checkpoint, as retention sees it. */
export interface CheckpointFacts {
  epoch: number;
  committedAtMs: number;
  /** The distinct non-zero base_epoch values of its entries: the checkpoints it is read through. */
  bases: number[];
}

/** A checkpoint held whatever the policy says, and why (for people). */
export interface Protection {
  epoch: number;
  reason: string;
}

export interface RetentionInput {
  /** Every visible checkpoint (any order). */
  checkpoints: CheckpointFacts[];
  policy: RetentionPolicy;
  /** Held by something outside the store listing: the newest verified, running restores. */
  protections: Protection[];
  /** Checkpoints committed at or after nowMs - graceMs are protected. */
  graceMs: number;
  nowMs: number;
}

export interface RetentionDecision {
  /** Kept epochs, ascending, each with every reason it is kept. */
  keep: Array<{ epoch: number; reasons: string[] }>;
  /** Epochs that may be deleted, ascending. */
  drop: number[];
}

const DAY_MS = 86_400_000;

export function factsOf(manifest: CheckpointManifest): CheckpointFacts {
  const bases = new Set<number>();
  for (const entry of manifest.queues) {
    if (entry.baseEpoch !== 0) bases.add(entry.baseEpoch);
    // A queue outside the cut resumes its capture from the checkpoint it is carried from (G8):
    // that checkpoint is its workers' base, so it is kept like one.
    if (entry.outsideCut && entry.outsideCut.sinceEpoch !== 0) bases.add(entry.outsideCut.sinceEpoch);
  }
  return { epoch: manifest.epoch, committedAtMs: manifest.committedAtMs, bases: [...bases].sort((a, b) => a - b) };
}

/** UTC day, ISO week (weeks start on Monday; 1970-01-01 was a Thursday) and calendar month of a time. */
export function periodsOf(ms: number): { day: number; week: number; month: number } {
  const day = Math.floor(ms / DAY_MS);
  const date = new Date(ms);
  return { day, week: Math.floor((day + 3) / 7), month: date.getUTCFullYear() * 12 + date.getUTCMonth() };
}

/** Which checkpoints to keep under `policy` and the protections, at time `nowMs`. */
export function retentionPlan(input: RetentionInput): RetentionDecision {
  const { policy, nowMs } = input;
  const newestFirst = [...input.checkpoints].sort((a, b) => b.epoch - a.epoch);
  const reasons = new Map<number, string[]>();
  const keep = (epoch: number, reason: string) => {
    const list = reasons.get(epoch);
    if (!list) reasons.set(epoch, [reason]);
    else if (!list.includes(reason)) list.push(reason);
  };
  if (newestFirst.length > 0) keep(newestFirst[0].epoch, 'latest');
  newestFirst.slice(0, policy.keepLast).forEach((c) => keep(c.epoch, `last ${policy.keepLast}`));
  for (const c of newestFirst) {
    if (policy.keepWithinMs > 0 && c.committedAtMs >= nowMs - policy.keepWithinMs) keep(c.epoch, 'within the retention time');
    if (c.committedAtMs >= nowMs - input.graceMs) keep(c.epoch, 'committed within the grace period');
  }
  const gfs = (count: number, period: 'day' | 'week' | 'month', label: string) => {
    const seen = new Set<number>();
    for (const c of newestFirst) {
      if (seen.size >= count) break;
      const p = periodsOf(c.committedAtMs)[period];
      if (seen.has(p)) continue;
      seen.add(p);
      keep(c.epoch, label);
    }
  };
  gfs(policy.keepDaily, 'day', 'daily');
  gfs(policy.keepWeekly, 'week', 'weekly');
  gfs(policy.keepMonthly, 'month', 'monthly');
  const visible = new Map(newestFirst.map((c) => [c.epoch, c]));
  for (const p of input.protections) if (visible.has(p.epoch)) keep(p.epoch, p.reason);
  // Bases last: every kept checkpoint's chain stays whole, whatever kept it.
  const pending = [...reasons.keys()];
  while (pending.length > 0) {
    const epoch = pending.pop()!;
    for (const base of visible.get(epoch)?.bases ?? []) {
      if (!visible.has(base)) continue;
      const isNew = !reasons.has(base);
      keep(base, `base of ${epoch}`);
      if (isNew) pending.push(base);
    }
  }
  const ascending = [...visible.keys()].sort((a, b) => a - b);
  return {
    keep: ascending.filter((e) => reasons.has(e)).map((epoch) => ({ epoch, reasons: reasons.get(epoch)! })),
    drop: ascending.filter((e) => !reasons.has(e)),
  };
}

/**
 * Why `epoch` may not be deleted by hand (`tidemark checkpoints delete`), or an empty list. Only
 * protections count here, not the policy: the latest, the grace period, the given protections
 * (newest verified, running restores) and being the base of any other visible checkpoint.
 */
export function deletionBlockers(epoch: number, input: Omit<RetentionInput, 'policy'>): string[] {
  const blockers: string[] = [];
  const newest = Math.max(0, ...input.checkpoints.map((c) => c.epoch));
  const self = input.checkpoints.find((c) => c.epoch === epoch);
  if (!self) return blockers;
  if (epoch === newest) blockers.push('it is the latest checkpoint: the next round builds on it');
  if (self.committedAtMs >= input.nowMs - input.graceMs) blockers.push('it was committed within the grace period: an in-flight round or a capture may build on it');
  for (const p of input.protections) if (p.epoch === epoch) blockers.push(`it is the ${p.reason}`);
  const dependents = input.checkpoints.filter((c) => c.bases.includes(epoch)).map((c) => c.epoch);
  if (dependents.length > 0) blockers.push(`checkpoint${dependents.length > 1 ? 's' : ''} ${dependents.join(', ')} ${dependents.length > 1 ? 'are' : 'is'} read through it (base_epoch)`);
  return blockers;
}

/**
 * The newest checkpoint committed at or before nowMs - historyMs (0 if none, or history is kept
 * for ever): the records a queue had before its cut there were captured before the history
 * window, so a new full manifest may leave them out (down to the queue's head).
 */
export function historyFloorEpoch(checkpoints: CheckpointFacts[], historyMs: number, nowMs: number): number {
  if (historyMs <= 0) return 0;
  let floor = 0;
  for (const c of checkpoints) if (c.committedAtMs <= nowMs - historyMs && c.epoch > floor) floor = c.epoch;
  return floor;
}

/**
 * The grace period garbage collection and retention keep: the configured one, but at least twice
 * the prepare timeout (a round's PREPARE may still be making segments durable for that long).
 */
export function gcGraceMs(gcGrace: number, prepareTimeout: number): number {
  return Math.max(gcGrace, 2 * prepareTimeout);
}
