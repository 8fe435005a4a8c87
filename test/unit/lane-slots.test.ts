import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../services/core/infrastructure/config.js';
import { LaneSlots } from '../../services/worker/lane-slots.js';
import { configError } from '../helpers/errors.js';

describe('lane slots: spreading capture channels over connections', () => {
  it('fills lanes in order, never past the per-lane limit', () => {
    const slots = new LaneSlots(4);
    const lanes = Array.from({ length: 10 }, (_, i) => slots.take(`q${i}`));
    expect(lanes).toEqual([0, 0, 0, 0, 1, 1, 1, 1, 2, 2]);
    expect(slots.counts()).toEqual([4, 4, 2]);
  });

  it('keeps a queue on its lane when it is taken again (a failed capture replaced)', () => {
    const slots = new LaneSlots(2);
    for (const id of ['a', 'b', 'c']) slots.take(id);
    expect(slots.take('c')).toBe(1);
    expect(slots.take('a')).toBe(0);
    expect(slots.counts()).toEqual([2, 1]);
  });

  it('reuses a released slot in the lowest lane before opening another', () => {
    const slots = new LaneSlots(2);
    for (const id of ['a', 'b', 'c', 'd', 'e']) slots.take(id);
    slots.release('b');
    slots.release('d');
    expect(slots.laneOf('b')).toBeUndefined();
    expect(slots.take('f')).toBe(0);
    expect(slots.take('g')).toBe(1);
    expect(slots.take('h')).toBe(2);
    expect(slots.take('i')).toBe(3);
    expect(slots.counts()).toEqual([2, 2, 2, 1]);
  });

  it('ignores the release of a queue that holds no slot', () => {
    const slots = new LaneSlots(1);
    slots.take('a');
    slots.release('nobody');
    slots.release('a');
    slots.release('a');
    expect(slots.counts()).toEqual([0]);
    expect(slots.take('b')).toBe(0);
  });

  it('puts every queue on one lane with a limit of one channel per lane', () => {
    const slots = new LaneSlots(1);
    expect(['a', 'b', 'c'].map((id) => slots.take(id))).toEqual([0, 1, 2]);
  });

  it('refuses a limit below one', () => {
    expect(() => new LaneSlots(0)).toThrow(RangeError);
    expect(() => new LaneSlots(2.5)).toThrow(RangeError);
  });
});

describe('config: channelsPerConnection', () => {
  it('defaults to 1000 and is set by TIDEMARK_CHANNELS_PER_CONNECTION', () => {
    expect(loadConfig({ env: {} }).channelsPerConnection).toBe(1_000);
    expect(loadConfig({ env: { TIDEMARK_CHANNELS_PER_CONNECTION: '4' } }).channelsPerConnection).toBe(4);
  });

  it('refuses anything but a whole number of at least one, naming the variable', () => {
    for (const value of ['0', '-3', '1.5', 'many']) {
      const err = configError(() => loadConfig({ env: { TIDEMARK_CHANNELS_PER_CONNECTION: value } }));
      expect(err.message).toMatch(/channelsPerConnection \(.*TIDEMARK_CHANNELS_PER_CONNECTION\)/);
    }
  });
});
