import { describe, expect, it } from 'vitest';
import { TransientError } from '../../services/core/errors.js';
import { withTimeLimit } from '../../services/core/infrastructure/time-limit.js';

describe('withTimeLimit', () => {
  it('passes a result that arrives in time through', async () => {
    await expect(withTimeLimit(Promise.resolve(42), 1_000, 'x')).resolves.toBe(42);
  });

  it('passes a failure that arrives in time through', async () => {
    await expect(withTimeLimit(Promise.reject(new Error('boom')), 1_000, 'x')).rejects.toThrow('boom');
  });

  it('gives up on a call that never settles, naming the step', async () => {
    const never = new Promise<number>(() => {});
    const err = await withTimeLimit(never, 20, 'leader lease renewal').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientError);
    expect((err as Error).message).toMatch(/leader lease renewal took longer than 20 ms/);
  });

  it('does not report a late failure of an abandoned call as unhandled', async () => {
    let fail!: (err: Error) => void;
    const late = new Promise<number>((_, reject) => (fail = reject));
    await expect(withTimeLimit(late, 10, 'x')).rejects.toBeInstanceOf(TransientError);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    fail(new Error('late'));
    await new Promise((r) => setTimeout(r, 20));
    process.off('unhandledRejection', onUnhandled);
    expect(unhandled).toEqual([]);
  });
});
