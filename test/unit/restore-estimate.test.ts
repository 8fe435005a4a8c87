import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../services/core/errors.js';
import { DEFAULT_QUEUE_RATE, estimateRestoreMs } from '../../services/coordinator/restore-estimate.js';

const q = (messages: number) => ({ messages, bodyBytes: messages * 100 });

describe('estimateRestoreMs', () => {
  it('is 0 when there are no queues or no messages', () => {
    const options = { concurrency: 4, rateLimit: 0, perQueueRate: 1000 };
    expect(estimateRestoreMs([], options)).toBe(0);
    expect(estimateRestoreMs([q(0), q(0)], options)).toBe(0);
  });

  it('takes one queue messages / perQueueRate', () => {
    expect(estimateRestoreMs([q(10_000)], { concurrency: 4, rateLimit: 0, perQueueRate: 5000 })).toBe(2000);
  });

  it('runs queues side by side up to the concurrency', () => {
    const queues = [q(1000), q(1000), q(1000), q(1000)];
    expect(estimateRestoreMs(queues, { concurrency: 4, rateLimit: 0, perQueueRate: 1000 })).toBe(1000);
    expect(estimateRestoreMs(queues, { concurrency: 2, rateLimit: 0, perQueueRate: 1000 })).toBe(2000);
    expect(estimateRestoreMs(queues, { concurrency: 1, rateLimit: 0, perQueueRate: 1000 })).toBe(4000);
  });

  it('schedules the largest queue first, so it does not start last', () => {
    // Largest first on 2 slots: [6] and [3, 3] → 6 s. In the given order, [3, 6] would take 9 s.
    const queues = [q(3000), q(3000), q(6000)];
    expect(estimateRestoreMs(queues, { concurrency: 2, rateLimit: 0, perQueueRate: 1000 })).toBe(6000);
  });

  it('puts each queue on the slot that frees first', () => {
    // Slots after 5, 4, 3 → [5], [4], [3]; then 2 → [3, 2]; then 2 → [4, 2]: makespan 6 s.
    const queues = [q(2000), q(5000), q(2000), q(4000), q(3000)];
    expect(estimateRestoreMs(queues, { concurrency: 3, rateLimit: 0, perQueueRate: 1000 })).toBe(6000);
  });

  it('splits the rate limit between the queues running at once', () => {
    // 4 slots share 2000 msgs/s: 500 each, below the 5000 one publisher could do.
    const queues = [q(1000), q(1000), q(1000), q(1000)];
    expect(estimateRestoreMs(queues, { concurrency: 4, rateLimit: 2000, perQueueRate: 5000 })).toBe(2000);
  });

  it('gives a lone queue the whole rate limit, but never more than one publisher achieves', () => {
    expect(estimateRestoreMs([q(3000)], { concurrency: 8, rateLimit: 1000, perQueueRate: 5000 })).toBe(3000);
    expect(estimateRestoreMs([q(3000)], { concurrency: 8, rateLimit: 100_000, perQueueRate: 1000 })).toBe(3000);
  });

  it('does not count empty queues as sharing the rate limit', () => {
    const queues = [q(1000), q(0), q(0), q(0)];
    expect(estimateRestoreMs(queues, { concurrency: 4, rateLimit: 1000, perQueueRate: 5000 })).toBe(1000);
  });

  it('rounds up to the millisecond, but not floating-point noise', () => {
    expect(estimateRestoreMs([q(1)], { concurrency: 1, rateLimit: 0, perQueueRate: 3000 })).toBe(1);
    expect(estimateRestoreMs([q(1000)], { concurrency: 1, rateLimit: 0, perQueueRate: 3000 })).toBe(334);
    // 9 queues share 700 msgs/s: 7000 * 1000 / (700 / 9) is 90000.00000000001 in floating point.
    const nine = Array.from({ length: 9 }, () => q(7000));
    expect(estimateRestoreMs(nine, { concurrency: 9, rateLimit: 700, perQueueRate: 5000 })).toBe(90_000);
  });

  it('treats a concurrency below 1 as 1', () => {
    expect(estimateRestoreMs([q(1000), q(1000)], { concurrency: 0, rateLimit: 0, perQueueRate: 1000 })).toBe(2000);
  });

  it('refuses a rate that would make the estimate meaningless', () => {
    expect(() => estimateRestoreMs([q(1)], { concurrency: 1, rateLimit: 0, perQueueRate: 0 })).toThrow(ConfigError);
    expect(() => estimateRestoreMs([q(1)], { concurrency: 1, rateLimit: -1, perQueueRate: 1000 })).toThrow(ConfigError);
    expect(() => estimateRestoreMs([q(1)], { concurrency: 1, rateLimit: Number.NaN, perQueueRate: 1000 })).toThrow(ConfigError);
  });

  it('estimates a million messages at the default rate as 200 s on one slot', () => {
    expect(estimateRestoreMs([q(1_000_000)], { concurrency: 1, rateLimit: 0, perQueueRate: DEFAULT_QUEUE_RATE })).toBe(200_000);
  });
});
