import { describe, expect, it } from 'vitest';
import {
  type CheckpointFacts,
  deletionBlockers,
  historyFloorEpoch,
  periodsOf,
  type RetentionPolicy,
  retentionPlan,
} from '../../services/coordinator/checkpoint-retention.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** Wednesday 2026-12-02 12:00 UTC. */
const NOW = Date.UTC(2026, 11, 2, 12);
const NONE: RetentionPolicy = { keepLast: 0, keepWithinMs: 0, keepDaily: 0, keepWeekly: 0, keepMonthly: 0, historyMs: 0 };

/** Full checkpoints 1..n, one every `everyMs`, the newest at NOW - ageOfNewestMs. */
function series(n: number, everyMs: number, ageOfNewestMs = 0): CheckpointFacts[] {
  return Array.from({ length: n }, (_, i) => ({ epoch: i + 1, committedAtMs: NOW - ageOfNewestMs - (n - 1 - i) * everyMs, bases: [] }));
}

const plan = (checkpoints: CheckpointFacts[], policy: Partial<RetentionPolicy>, extra: { protections?: Array<{ epoch: number; reason: string }>; graceMs?: number; nowMs?: number } = {}) =>
  retentionPlan({ checkpoints, policy: { ...NONE, ...policy }, protections: extra.protections ?? [], graceMs: extra.graceMs ?? 0, nowMs: extra.nowMs ?? NOW });

const kept = (d: ReturnType<typeof plan>) => d.keep.map((k) => k.epoch);

describe('retention policy (pure)', () => {
  it('with every rule off keeps only the latest checkpoint', () => {
    const d = plan(series(5, HOUR, DAY), {});
    expect(kept(d)).toEqual([5]);
    expect(d.drop).toEqual([1, 2, 3, 4]);
    expect(d.keep[0].reasons).toEqual(['latest']);
  });

  it('keep-last N keeps the newest N', () => {
    expect(kept(plan(series(10, HOUR), { keepLast: 3 }))).toEqual([8, 9, 10]);
  });

  it('keep-within keeps everything committed within the duration, and nothing older', () => {
    // One per hour, the newest now: 6 hours keep the 7 committed at NOW-6h..NOW.
    expect(kept(plan(series(20, HOUR), { keepWithinMs: 6 * HOUR }))).toEqual([14, 15, 16, 17, 18, 19, 20]);
  });

  it('daily keeps the newest checkpoint of each of the last D UTC days that have one', () => {
    // Every 6 hours for 10 days: the newest of each day is the one at 18:00 (or NOW's day: 12:00).
    const cps = series(40, 6 * HOUR);
    const d = plan(cps, { keepDaily: 3 });
    const days = kept(d).map((e) => new Date(cps[e - 1].committedAtMs).toISOString());
    expect(days).toEqual(['2026-11-30T18:00:00.000Z', '2026-12-01T18:00:00.000Z', '2026-12-02T12:00:00.000Z']);
  });

  it('daily counts days that have checkpoints, so a pause in backups does not empty the daily set', () => {
    // Three checkpoints, 30 days apart: keep-daily 2 keeps the two newest, though they are a month apart.
    const cps: CheckpointFacts[] = [1, 2, 3].map((epoch) => ({ epoch, committedAtMs: NOW - (3 - epoch) * 30 * DAY, bases: [] }));
    expect(kept(plan(cps, { keepDaily: 2 }))).toEqual([2, 3]);
  });

  it('weekly buckets are ISO weeks, Monday to Sunday, UTC', () => {
    const sunday = Date.UTC(2026, 10, 29, 23, 59); // Sunday 2026-11-29
    const monday = Date.UTC(2026, 10, 30, 0, 1); // Monday 2026-11-30
    expect(periodsOf(monday).week).toBe(periodsOf(sunday).week + 1);
    expect(periodsOf(Date.UTC(2026, 11, 6, 23)).week).toBe(periodsOf(monday).week);
    const cps: CheckpointFacts[] = [
      { epoch: 1, committedAtMs: sunday - DAY, bases: [] },
      { epoch: 2, committedAtMs: sunday, bases: [] },
      { epoch: 3, committedAtMs: monday, bases: [] },
      { epoch: 4, committedAtMs: monday + DAY, bases: [] },
    ];
    expect(kept(plan(cps, { keepWeekly: 2 }, { nowMs: monday + 2 * DAY }))).toEqual([2, 4]);
  });

  it('monthly keeps the newest of each calendar month, and reasons name every rule that keeps one', () => {
    const cps: CheckpointFacts[] = [
      { epoch: 1, committedAtMs: Date.UTC(2026, 8, 30), bases: [] },
      { epoch: 2, committedAtMs: Date.UTC(2026, 9, 1), bases: [] },
      { epoch: 3, committedAtMs: Date.UTC(2026, 9, 31, 23), bases: [] },
      { epoch: 4, committedAtMs: Date.UTC(2026, 10, 15), bases: [] },
      { epoch: 5, committedAtMs: Date.UTC(2026, 11, 1), bases: [] },
    ];
    const d = plan(cps, { keepMonthly: 3, keepLast: 1 });
    expect(kept(d)).toEqual([3, 4, 5]);
    expect(d.keep.find((k) => k.epoch === 5)!.reasons).toEqual(['latest', 'last 1', 'monthly']);
  });

  it('keeps the base chain of every kept incremental checkpoint, however old', () => {
    // 1 full; 2 on 1; 3 on 2; 4 full; 5 on 4. Keep-last 3 keeps 3, 4, 5; 3 needs 2, and 2 needs 1.
    const cps: CheckpointFacts[] = [
      { epoch: 1, committedAtMs: NOW - 5 * DAY, bases: [] },
      { epoch: 2, committedAtMs: NOW - 4 * DAY, bases: [1] },
      { epoch: 3, committedAtMs: NOW - 3 * DAY, bases: [2] },
      { epoch: 4, committedAtMs: NOW - 2 * DAY, bases: [] },
      { epoch: 5, committedAtMs: NOW - DAY, bases: [4] },
      { epoch: 6, committedAtMs: NOW - DAY / 2, bases: [5, 4] },
    ];
    const d = plan(cps, { keepLast: 4 });
    expect(kept(d)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(d.keep.find((k) => k.epoch === 1)!.reasons).toEqual(['base of 2']);
    expect(kept(plan(cps, { keepLast: 3 }))).toEqual([4, 5, 6]);
    expect(plan(cps, { keepLast: 3 }).drop).toEqual([1, 2, 3]);
  });

  it('never drops a protected checkpoint (verified, a restore), nor one committed within the grace period', () => {
    const cps = series(10, HOUR);
    const d = plan(cps, {}, { protections: [{ epoch: 2, reason: 'newest verified checkpoint' }, { epoch: 4, reason: 'checkpoint of restore r1 (running)' }, { epoch: 99, reason: 'gone' }], graceMs: 90 * 60_000 });
    expect(kept(d)).toEqual([2, 4, 9, 10]);
    expect(d.keep.find((k) => k.epoch === 2)!.reasons).toEqual(['newest verified checkpoint']);
    expect(d.keep.find((k) => k.epoch === 9)!.reasons).toEqual(['committed within the grace period']);
  });

  it('a protected incremental keeps its bases too', () => {
    const cps: CheckpointFacts[] = [
      { epoch: 1, committedAtMs: NOW - 3 * DAY, bases: [] },
      { epoch: 2, committedAtMs: NOW - 2 * DAY, bases: [1] },
      { epoch: 3, committedAtMs: NOW - DAY, bases: [] },
    ];
    expect(kept(plan(cps, {}, { protections: [{ epoch: 2, reason: 'newest verified checkpoint' }] }))).toEqual([1, 2, 3]);
  });

  it('an empty store keeps and drops nothing', () => {
    expect(plan([], { keepLast: 5 })).toEqual({ keep: [], drop: [] });
  });
});

describe('deleting one checkpoint by hand', () => {
  const cps: CheckpointFacts[] = [
    { epoch: 1, committedAtMs: NOW - 3 * DAY, bases: [] },
    { epoch: 2, committedAtMs: NOW - 2 * DAY, bases: [1] },
    { epoch: 3, committedAtMs: NOW - DAY, bases: [] },
    { epoch: 4, committedAtMs: NOW - 60_000, bases: [3] },
  ];
  const blockers = (epoch: number, protections: Array<{ epoch: number; reason: string }> = []) => deletionBlockers(epoch, { checkpoints: cps, protections, graceMs: 15 * 60_000, nowMs: NOW });

  it('is allowed for an old checkpoint nothing reads through', () => {
    expect(blockers(2)).toEqual([]);
  });

  it('is refused for the latest (also within the grace period), a base, and a protected one, each named', () => {
    expect(blockers(4)).toEqual(['it is the latest checkpoint: the next round builds on it', 'it was committed within the grace period: an in-flight round or a capture may build on it']);
    expect(blockers(1)).toEqual(['checkpoint 2 is read through it (base_epoch)']);
    expect(blockers(3)).toEqual(['checkpoint 4 is read through it (base_epoch)']);
    expect(blockers(2, [{ epoch: 2, reason: 'newest verified checkpoint' }])).toEqual(['it is the newest verified checkpoint']);
  });
});

describe('history floor', () => {
  it('is the newest checkpoint committed at least the history time ago, or 0', () => {
    const cps = series(10, DAY);
    expect(historyFloorEpoch(cps, 3 * DAY, NOW)).toBe(7);
    expect(historyFloorEpoch(cps, 30 * DAY, NOW)).toBe(0);
    expect(historyFloorEpoch(cps, 0, NOW)).toBe(0);
  });
});
