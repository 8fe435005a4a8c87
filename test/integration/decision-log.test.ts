/**
 * The decision log and the lease against a real Redis: epochs and decision writes are fenced by
 * the exact lease acquisition, and after Redis loses its counters new epochs start above every
 * epoch the store shows was used (visible or staged).
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecisionLog } from '../../services/core/state/decision-log.js';
import { LeaderLease } from '../../services/coordinator/leader-lease.js';
import { LeaseHolding } from '../../services/coordinator/lease-holding.js';
import { NotLeaseHolderError } from '../../services/core/errors.js';
import { redisKeys } from '../../services/core/format/names.js';
import { testServices, uniqueName } from '../helpers/services.js';

let redis: Redis;

/** Every fixed Redis key of a namespace. */
const keysOf = (namespace: string) => Object.values(redisKeys(namespace)).filter((k): k is string => typeof k === 'string');

beforeAll(async () => {
  redis = new Redis((await testServices()).redisUrl);
});

afterAll(() => {
  redis?.disconnect();
});

describe('epochs after Redis loses its counters', () => {
  it('start above the newest staged epoch when the counter is missing, and ask the store only then', async () => {
    const namespace = uniqueName('tmd');
    const lease = new LeaderLease(redis, namespace, 'c1', 5_000);
    expect(await lease.tryAcquire()).toBe(true);
    const log = new DecisionLog(redis, namespace);
    let asked = 0;
    const staged = async () => {
      asked += 1;
      return 41;
    };
    expect(await log.nextEpoch(lease.holder, lease.token, 12, staged)).toBe(42);
    expect(await log.nextEpoch(lease.holder, lease.token, 12, staged)).toBe(43);
    expect(asked, 'the store is listed only while the counter is missing').toBe(1);
    // A visible manifest above the counter still wins.
    expect(await log.nextEpoch(lease.holder, lease.token, 50, staged)).toBe(51);
    // Redis forgets the counter: the store is asked again.
    await redis.del(redisKeys(namespace).epoch);
    expect(await log.nextEpoch(lease.holder, lease.token, 12, staged)).toBe(42);
    expect(asked).toBe(2);
    await redis.del(...keysOf(namespace));
  });
});

describe('fencing by lease acquisition', () => {
  it('refuses writes begun under an earlier acquisition, even with the same token number', async () => {
    const namespace = uniqueName('tmd');
    const first = new LeaderLease(redis, namespace, 'c1', 5_000);
    expect(await first.tryAcquire()).toBe(true);
    const oldHolder = first.holder;
    const log = new DecisionLog(redis, namespace);
    const epoch = await log.nextEpoch(oldHolder, first.token, 0, async () => 0);
    await log.record(oldHolder, { epoch, roundId: 'old', state: 'started', reason: '', leaderToken: first.token, atMs: Date.now() });
    // Redis is emptied; the same coordinator wins again, with the same token number.
    await redis.del(...keysOf(namespace));
    const again = new LeaderLease(redis, namespace, 'c1', 5_000);
    expect(await again.tryAcquire()).toBe(true);
    expect(again.token).toBe(first.token);
    expect(again.holder).not.toBe(oldHolder);
    await expect(log.record(oldHolder, { epoch, roundId: 'old', state: 'committed', reason: '', leaderToken: first.token, atMs: Date.now() })).rejects.toBeInstanceOf(
      NotLeaseHolderError,
    );
    await expect(log.nextEpoch(oldHolder, first.token, 0, async () => 0)).rejects.toBeInstanceOf(NotLeaseHolderError);
    expect(await log.get(epoch)).toBeUndefined();
    expect((await again.current())?.id).toBe('c1');
    await redis.del(...keysOf(namespace));
  });

  it('stops holding the lease locally once it may have run out, and when release cannot reach Redis', async () => {
    const namespace = uniqueName('tmd');
    const lease = new LeaderLease(redis, namespace, 'c1', 300);
    expect(await lease.tryAcquire()).toBe(true);
    expect(lease.held).toBe(true);
    await new Promise((r) => setTimeout(r, 350));
    expect(lease.held, 'no renewal for a lease time').toBe(false);
    const offline = new Redis({ port: 1, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    offline.on('error', () => {});
    const cut = new LeaderLease(offline, namespace, 'c2', 5_000);
    (cut as unknown as { holding: LeaseHolding }).holding.acquired(7, LeaseHolding.claim('c2', 'test'), Date.now());
    await expect(cut.release()).rejects.toThrow();
    expect(cut.token, 'the token is dropped even though Redis was not told').toBe(0);
    offline.disconnect();
    await redis.del(...keysOf(namespace));
  });
});
