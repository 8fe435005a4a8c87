/**
 * Bounded concurrency: the one pool every "N at a time" in Tidemark uses (restore queues,
 * preflight probes, verification reads).
 */

/**
 * Runs `fn` over `items`, at most `limit` at a time, starting them in order. No new item starts
 * once one has failed or `signal` is aborted; the running ones are always waited for, so nothing
 * of it runs after this returns or throws. Throws the first failure; an abort alone is not one.
 */
export async function forEachLimited<T>(items: Iterable<T>, limit: number, fn: (item: T) => Promise<void>, signal?: AbortSignal): Promise<void> {
  const pending = [...items];
  let failure: { error: unknown } | undefined;
  const runner = async () => {
    while (!failure && !signal?.aborted && pending.length > 0) {
      const item = pending.shift() as T;
      try {
        await fn(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  const slots = Math.max(1, Math.min(Math.floor(limit) || 1, pending.length));
  await Promise.all(Array.from({ length: slots }, runner));
  if (failure) throw failure.error;
}
