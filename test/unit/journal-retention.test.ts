import { describe, expect, it } from 'vitest';
import type { NodeResources } from '../../services/core/amqp/management-types.js';
import { journalBound, segmentBytesFor, type RetentionLimits } from '../../services/coordinator/journal-retention.js';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const limits: RetentionLimits = { diskShare: 0.5, minBytes: 64 * MiB, maxBytes: 0, diskMargin: 1 * GiB };

function node(diskFree: number, extra: Partial<NodeResources> = {}): NodeResources {
  return { name: 'rabbit@a', running: true, memAlarm: false, diskFree, diskFreeLimit: 50 * MiB, diskFreeAlarm: false, ...extra };
}

describe('journal retention bound', () => {
  it('gives new journals their share of the disk headroom', () => {
    const d = journalBound([node(101 * GiB + 50 * MiB)], limits, { journals: 100 });
    expect(d.boundBytes).toBe(Math.floor((0.5 * 100 * GiB) / 100));
    expect(d.shed).toBe(0);
    expect(d.pressure).toBe('');
  });

  it('uses the tightest node and keeps to the cap and the floor', () => {
    const two = [node(500 * GiB), node(11 * GiB + 50 * MiB, { name: 'rabbit@b' })];
    expect(journalBound(two, limits, { journals: 10 }).boundBytes).toBe(Math.floor((0.5 * 10 * GiB) / 10));
    expect(journalBound(two, { ...limits, maxBytes: 100 * MiB }, { journals: 10 }).boundBytes).toBe(100 * MiB);
    expect(journalBound(two, limits, { journals: 1_000_000 }).boundBytes).toBe(64 * MiB);
  });

  it('converges as journals fill the disk: the journals and what they leave free balance', () => {
    // 100 GiB of headroom, 100 journals that each fill to the bound in force.
    const total = 100 * GiB;
    let bound: number | undefined;
    for (let pass = 0; pass < 40; pass += 1) {
      const used = bound === undefined ? 0 : 100 * bound;
      const d = journalBound([node(total - used + GiB + 50 * MiB)], limits, { journals: 100, current: bound, journalsAtCurrent: 100 });
      bound = d.boundBytes;
      expect(100 * bound!, 'journals never take more than the headroom').toBeLessThanOrEqual(total);
    }
    // Within the hysteresis of half the headroom each.
    expect(100 * bound!).toBeGreaterThan(0.4 * total);
    expect(100 * bound!).toBeLessThan(0.6 * total);
  });

  it('shrinks at once when the disk runs low, grows at most twofold, and ignores small moves', () => {
    const low = journalBound([node(1 * GiB + 50 * MiB + 200 * MiB)], limits, { journals: 10, current: 1 * GiB, journalsAtCurrent: 10 });
    expect(low.boundBytes).toBeLessThan(1 * GiB);
    const high = journalBound([node(1000 * GiB)], limits, { journals: 10, current: 100 * MiB, journalsAtCurrent: 10 });
    expect(high.boundBytes).toBe(200 * MiB);
    const same = journalBound([node(1100 * MiB + GiB + 50 * MiB)], limits, { journals: 10, current: 100 * MiB, journalsAtCurrent: 10 });
    expect(same.boundBytes).toBe(100 * MiB);
  });

  it('sheds one journal only under pressure with the bound at its floor', () => {
    const pressed = [node(50 * MiB + 300 * MiB)]; // 300 MiB above the limit: inside half the 1 GiB margin
    const first = journalBound(pressed, limits, { journals: 10, current: 512 * MiB, journalsAtCurrent: 10 });
    expect(first.pressure).toMatch(/within 512 MiB of its disk_free_limit/);
    expect(first.boundBytes).toBeLessThan(512 * MiB);
    const atFloor = journalBound(pressed, limits, { journals: 10, current: 64 * MiB, journalsAtCurrent: 10 });
    expect(atFloor.boundBytes).toBe(64 * MiB);
    expect(atFloor.shed).toBe(1);
    expect(journalBound(pressed, limits, { journals: 0, current: 64 * MiB }).shed).toBe(0);
    const alarm = journalBound([node(100 * GiB, { diskFreeAlarm: true })], { ...limits, maxBytes: 64 * MiB }, { journals: 3, current: 64 * MiB });
    expect(alarm.pressure).toMatch(/disk alarm/);
    expect(alarm.shed).toBe(1);
  });

  it('keeps the bound in force when the broker reports no disk figures', () => {
    expect(journalBound([{ name: 'x', running: false, memAlarm: false, diskFreeAlarm: false }], limits, { journals: 3, current: 99 }).boundBytes).toBe(99);
    expect(journalBound([], limits, { journals: 3 }).boundBytes).toBeUndefined();
  });

  it('sizes segments an eighth of the bound, within 1 MB and the broker default', () => {
    expect(segmentBytesFor(undefined)).toBeUndefined();
    expect(segmentBytesFor(64 * MiB)).toBe(8 * MiB);
    expect(segmentBytesFor(1 * MiB)).toBe(1_000_000);
    expect(segmentBytesFor(100 * GiB)).toBe(500_000_000);
  });
});
