import { describe, expect, it } from 'vitest';
import { forEachLimited } from '../../services/core/infrastructure/limited.js';

const tick = () => new Promise((r) => setTimeout(r, 1));

describe('forEachLimited', () => {
  it('runs every item, never more than the limit at once, starting them in order', async () => {
    let running = 0;
    let most = 0;
    const started: number[] = [];
    await forEachLimited([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
      started.push(n);
      running += 1;
      most = Math.max(most, running);
      await tick();
      running -= 1;
    });
    expect(started).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(most).toBe(3);
  });

  it('starts nothing new after a failure, waits for the running ones, and throws the first failure', async () => {
    const finished: number[] = [];
    const run = forEachLimited([1, 2, 3, 4, 5], 2, async (n) => {
      if (n === 1) throw new Error('one failed');
      await tick();
      await tick();
      finished.push(n);
    });
    await expect(run).rejects.toThrow('one failed');
    // 2 was running when 1 failed: it finished before the call returned; 3, 4 and 5 never started.
    expect(finished).toEqual([2]);
  });

  it('stops starting items once the signal is aborted, without an error', async () => {
    const controller = new AbortController();
    const started: number[] = [];
    await forEachLimited([1, 2, 3, 4], 1, async (n) => {
      started.push(n);
      if (n === 2) controller.abort();
      await tick();
    }, controller.signal);
    expect(started).toEqual([1, 2]);
  });

  it('handles no items and a limit below one', async () => {
    await forEachLimited([], 4, async () => {
      throw new Error('never called');
    });
    const seen: number[] = [];
    await forEachLimited([1, 2], 0, async (n) => {
      seen.push(n);
    });
    expect(seen).toEqual([1, 2]);
  });
});
