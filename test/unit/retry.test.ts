import { describe, expect, it } from 'vitest';
import { backoffDelay, retry } from '../../services/core/infrastructure/retry.js';

describe('retry', () => {
  it('doubles the delay from the first, up to the cap', () => {
    expect([1, 2, 3, 4, 5, 6].map((a) => backoffDelay(a, 100, 1_000))).toEqual([100, 200, 400, 800, 1_000, 1_000]);
  });

  it('tries again until the call succeeds, telling onRetry each time', async () => {
    const seen: Array<[number, number]> = [];
    const result = await retry(
      async (attempt) => {
        if (attempt < 3) throw new Error(`try ${attempt}`);
        return 'done';
      },
      { initialDelayMs: 1, maxDelayMs: 2, onRetry: (_err, attempt, delayMs) => seen.push([attempt, delayMs]) },
    );
    expect(result).toBe('done');
    expect(seen).toEqual([
      [1, 1],
      [2, 2],
    ]);
  });

  it('throws at once what is not retryable, and the last error once the tries run out', async () => {
    let calls = 0;
    await expect(
      retry(
        async () => {
          calls += 1;
          throw new Error('fatal');
        },
        { initialDelayMs: 1, maxDelayMs: 1, retryable: () => false },
      ),
    ).rejects.toThrow('fatal');
    expect(calls).toBe(1);
    calls = 0;
    await expect(
      retry(
        async () => {
          calls += 1;
          throw new Error(`try ${calls}`);
        },
        { initialDelayMs: 1, maxDelayMs: 1, attempts: 3 },
      ),
    ).rejects.toThrow('try 3');
    expect(calls).toBe(3);
  });

  it('gives up the wait when the signal aborts, with its reason', async () => {
    const controller = new AbortController();
    const run = retry(
      async () => {
        throw new Error('down');
      },
      { initialDelayMs: 60_000, maxDelayMs: 60_000, signal: controller.signal },
    );
    setTimeout(() => controller.abort(new Error('stopping')), 10);
    await expect(run).rejects.toThrow('stopping');
  });
});
