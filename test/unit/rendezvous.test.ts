import { describe, expect, it } from 'vitest';
import { assign, rendezvousOwner } from '../../services/core/state/rendezvous.js';

const keys = Array.from({ length: 2000 }, (_, i) => `/\u0000queue-${i}`);
const three = ['worker-a', 'worker-b', 'worker-c'];

function owners(workers: string[]): Map<string, string> {
  return new Map(keys.map((k) => [k, rendezvousOwner(k, workers)!]));
}

describe('rendezvous hashing', () => {
  it('is deterministic and independent of worker order', () => {
    const a = owners(three);
    expect(owners([...three].reverse())).toEqual(a);
    expect(owners(three)).toEqual(a);
    // Pinned: every process and every release must compute the same owners.
    expect(rendezvousOwner('/\u0000orders', three)).toBe('worker-a');
    expect(rendezvousOwner('prod\u0000a', three)).toBe('worker-b');
  });

  it('has no owner without workers', () => {
    expect(rendezvousOwner('k', [])).toBeUndefined();
    expect(assign(['k'], [])).toEqual(new Map());
  });

  it('spreads keys roughly evenly', () => {
    const counts = [...assign(keys, three).values()].map((v) => v.length);
    for (const c of counts) expect(c).toBeGreaterThan(2000 / 3 * 0.8);
  });

  it('moves about a quarter of the keys to a 4th worker, and only to it', () => {
    const before = owners(three);
    const after = owners([...three, 'worker-d']);
    const moved = keys.filter((k) => before.get(k) !== after.get(k));
    expect(moved.length / keys.length).toBeGreaterThan(0.18);
    expect(moved.length / keys.length).toBeLessThan(0.32);
    for (const k of moved) expect(after.get(k)).toBe('worker-d');
  });

  it("moves only a leaving worker's keys", () => {
    const before = owners(three);
    const after = owners(['worker-a', 'worker-c']);
    for (const k of keys) {
      if (before.get(k) !== 'worker-b') expect(after.get(k)).toBe(before.get(k));
      else expect(after.get(k)).not.toBe('worker-b');
    }
  });

  it('assigns every key exactly once, listing idle workers too', () => {
    const map = assign(keys.slice(0, 2), [...three, 'worker-idle-1', 'worker-idle-2']);
    expect([...map.keys()].sort()).toEqual([...three, 'worker-idle-1', 'worker-idle-2'].sort());
    expect([...map.values()].flat().sort()).toEqual(keys.slice(0, 2).sort());
    const full = assign(keys, three);
    expect([...full.values()].flat().sort()).toEqual([...keys].sort());
    for (const [worker, owned] of full) for (const k of owned) expect(rendezvousOwner(k, three)).toBe(worker);
  });
});
