/**
 * Conformance of the simulation's Redis (test/sim/redis.ts RedisModel, which runs the shipped Lua
 * scripts in an in-memory Redis, test/sim/lua-redis.ts) to a real Redis running the same scripts
 * through leader-lease.ts and decision-log.ts: the same calls give the same tokens, epochs,
 * refusals and stored decisions. The simulation checks the protocol only as well as its Redis
 * executes these scripts as Redis does.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecisionLog, type CommitRecord, type DecisionRecord } from '../../services/core/state/decision-log.js';
import { LeaderLease } from '../../services/coordinator/leader-lease.js';
import { DecisionConflictError, NotLeaseHolderError } from '../../services/core/errors.js';
import { redisKeys } from '../../services/core/format/names.js';
import { RedisModel, type SimDecisionRecord } from '../sim/redis.js';
import { testServices, uniqueName } from '../helpers/services.js';

let redis: Redis;

beforeAll(async () => {
  redis = new Redis((await testServices()).redisUrl);
});

afterAll(() => {
  redis?.disconnect();
});

const LEASE_MS = 60_000;
const NOW = 1_000;

/** What a real decision write did, in the model's terms: 1 written (or already so), 0 kept, -1 not the holder, -2 decided otherwise. */
async function recordReal(log: DecisionLog, holder: string, record: DecisionRecord): Promise<number> {
  const before = await log.get(record.epoch);
  try {
    await log.record(holder, record);
  } catch (err) {
    if (err instanceof NotLeaseHolderError) return -1;
    if (err instanceof DecisionConflictError) return -2;
    throw err;
  }
  return before && record.state === 'started' ? 0 : 1;
}

function record(epoch: number, state: DecisionRecord['state'], roundId = `r-${epoch}`): SimDecisionRecord {
  const commit = state === 'committed' ? ({ roundId, partitions: [], exchanges: [] } as unknown as CommitRecord) : undefined;
  return { epoch, roundId, state, reason: '', leaderToken: 1, atMs: NOW, commit, ghostAcquisition: 0 };
}

/** A lease in both worlds: the real one, and the model's acquisition with the same holder string. */
async function acquire(lease: LeaderLease, model: RedisModel, id: string, floor: number): Promise<number> {
  const won = await lease.tryAcquire(floor);
  const who = won ? lease.holder.slice(lease.holder.indexOf(':') + 1) : `${id}:lost`;
  const modelled = model.tryAcquire(who, LEASE_MS, floor, NOW).token;
  expect(modelled, `acquire by ${id} with floor ${floor}`).toBe(won ? lease.token : 0);
  if (won) expect(model.holder(NOW)).toBe(lease.holder);
  return modelled;
}

describe('RedisModel against the real scripts', () => {
  it('hands out the same lease tokens, and refuses the same renewals and acquisitions', async () => {
    const namespace = uniqueName('tmconf');
    const model = new RedisModel();
    const a = new LeaderLease(redis, namespace, 'c0', LEASE_MS);
    const b = new LeaderLease(redis, namespace, 'c1', LEASE_MS);
    expect(await acquire(a, model, 'c0', 0)).toBe(1);
    expect(await acquire(b, model, 'c1', 0)).toBe(0);
    const holderA = a.holder;
    expect(await a.renew()).toBe(model.renew(holderA, LEASE_MS, NOW));
    await a.release();
    model.release(holderA, NOW);
    expect(model.holder(NOW)).toBeUndefined();
    expect(await acquire(b, model, 'c1', 10)).toBe(11);
    // The deposed holder string renews nothing.
    expect(model.renew(holderA, LEASE_MS, NOW)).toBe(false);
    expect(Number(await redis.eval(`if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end return 0`, 1, redisKeys(namespace).leader, holderA))).toBe(0);
    // Redis lost: the counter restarts above the floor.
    await redis.del(...Object.values(redisKeys(namespace)).filter((k): k is string => typeof k === 'string'));
    model.wipe();
    const c = new LeaderLease(redis, namespace, 'c0', LEASE_MS);
    expect(await acquire(c, model, 'c0', 1)).toBe(2); // the counter's next value is the floor itself: above it
    model.release(c.holder, NOW);
    await c.release();
    expect(await acquire(c, model, 'c0', 4)).toBe(5);
  });

  it('takes the same epochs, and keeps or refuses the same decision writes', async () => {
    const namespace = uniqueName('tmconf');
    const model = new RedisModel();
    const lease = new LeaderLease(redis, namespace, 'c0', LEASE_MS);
    await acquire(lease, model, 'c0', 0);
    const log = new DecisionLog(redis, namespace);
    const holder = lease.holder;

    /** DecisionLog.nextEpoch and the model's two calls, as coordinator-node.ts makes them. */
    const nextEpoch = async (newestVisible: number, newestStaged: number) => {
      const real = await log.nextEpoch(holder, lease.token, newestVisible, async () => newestStaged);
      let modelled = model.nextEpoch(holder, newestVisible, NOW, true);
      if (modelled === -2) modelled = model.nextEpoch(holder, Math.max(newestVisible, newestStaged), NOW, false);
      expect(modelled, `next epoch above ${newestVisible} (staged ${newestStaged})`).toBe(real);
      return real;
    };
    expect(await nextEpoch(3, 5)).toBe(6); // counter missing: above the staged epoch too
    expect(await nextEpoch(0, 50)).toBe(7); // counter there: the store is not asked
    expect(await nextEpoch(9, 0)).toBe(10); // a visible manifest above the counter wins

    const writes: Array<[string, SimDecisionRecord]> = [
      [holder, record(10, 'started')],
      [holder, record(10, 'started')],
      [holder, record(10, 'committed')],
      [holder, record(10, 'committed')],
      [holder, record(10, 'aborted')],
      [holder, record(10, 'started')],
      [holder, record(11, 'aborted')],
      [holder, record(11, 'committed')],
      ['1:c9:deadbeef', record(12, 'started')],
    ];
    for (const [writer, rec] of writes) {
      const real = await recordReal(log, writer, rec);
      expect(model.record(writer, rec, NOW), `record ${rec.state} ${rec.epoch} by ${writer}`).toBe(real);
    }
    const stored = (await log.all()).map((r) => `${r.epoch} ${r.state} ${r.roundId}`);
    expect(model.all().map((r) => `${r.epoch} ${r.state} ${r.roundId}`)).toEqual(stored);

    // A write from a holder that lost the lease is refused by both, whatever it records.
    await lease.release();
    model.release(holder, NOW);
    expect(model.record(holder, record(13, 'started'), NOW)).toBe(await recordReal(log, holder, record(13, 'started')));
    await expect(log.nextEpoch(holder, 1, 0, async () => 0)).rejects.toBeInstanceOf(NotLeaseHolderError);
    expect(model.nextEpoch(holder, 0, NOW, true)).toBe(-1);
  });
});
