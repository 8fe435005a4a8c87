/**
 * The only source of randomness in the simulation: a seeded 32-bit PRNG (mulberry32), so one seed
 * gives one schedule, byte for byte. Nothing in test/sim may call Math.random or read the clock.
 */
export class Random {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max], both included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return p > 0 && this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }

  /** A lowercase hex string of `digits` digits (round ids, content hashes). */
  hex(digits: number): string {
    let out = '';
    while (out.length < digits) out += this.int(0, 0xffff).toString(16).padStart(4, '0');
    return out.slice(0, digits);
  }

  /** An independent generator for one part of the world, so adding draws in one part does not reshuffle another. */
  fork(): Random {
    return new Random(this.int(0, 0xffffffff));
  }
}
