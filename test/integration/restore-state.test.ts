/** A restore's durable state in a real Redis: what resume relies on (services/core/state/restore-state.ts). */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queueKey } from '../../services/core/format/queue-key.js';
import { RestoreStateStore, type RestoreRecord } from '../../services/core/state/restore-state.js';
import { redisKeys } from '../../services/core/format/names.js';
import { testServices, uniqueName } from '../helpers/services.js';

let redis: Redis;
let namespace: string;
let state: RestoreStateStore;

function record(id: string, createdAtMs: number): RestoreRecord {
  return { id, checkpoint: 7, request: { checkpoint: '7', prefix: 'r.' }, state: 'running', createdAtMs, updatedAtMs: createdAtMs, queues: 2, messages: 100 };
}

describe('restore state in Redis', () => {
  beforeAll(async () => {
    redis = new Redis((await testServices()).redisUrl);
    namespace = uniqueName('tmrs');
    state = new RestoreStateStore(redis, namespace);
  });

  afterAll(async () => {
    const keys = await redis.keys(`${namespace}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  it("keeps a queue's confirmed prefix moving forward only: a late write of an older attempt cannot move it back", async () => {
    const q = queueKey('/', 'orders');
    await state.advance('r1', q, 64, 63);
    await state.advance('r1', q, 128, 131);
    await state.advance('r1', q, 96, 99); // an older attempt, late
    const progress = (await state.progress('r1')).get(q);
    expect(progress).toEqual({ started: false, confirmed: 128, offset: 131 });
  });

  it('reads started, confirmed and finished per queue, vhost and name kept apart', async () => {
    const a = queueKey('v1', 'q');
    const b = queueKey('v2', 'q');
    await state.markStarted('r2', a);
    await state.advance('r2', a, 10, 9);
    await state.markFinished('r2', b, { ok: false, error: 'segment x is corrupt' });
    const progress = await state.progress('r2');
    expect(progress.get(a)).toEqual({ started: true, confirmed: 10, offset: 9 });
    expect(progress.get(b)).toEqual({ started: false, confirmed: 0, offset: -1, finished: { ok: false, error: 'segment x is corrupt' } });
    await state.clearFinished('r2', b);
    expect((await state.progress('r2')).get(b)?.finished).toBeUndefined();
  });

  it('lists restores newest first; an ended one expires after a week, a running one never', async () => {
    await state.create(record('old', 1_000));
    await state.create(record('new', 2_000));
    await state.markStarted('new', queueKey('/', 'q'));
    expect((await state.list()).map((r) => r.id)).toEqual(['new', 'old']);

    await state.setState('new', 'cancelled');
    const keys = redisKeys(namespace);
    expect(await redis.ttl(keys.restore('new'))).toBeGreaterThan(6 * 24 * 3600);
    expect(await redis.ttl(keys.restoreQueues('new'))).toBeGreaterThan(6 * 24 * 3600);
    expect((await state.get('new'))?.state).toBe('cancelled');
    // Resumed: running again, no expiry.
    await state.setState('new', 'running');
    expect(await redis.ttl(keys.restore('new'))).toBe(-1);
    expect(await redis.ttl(keys.restoreQueues('new'))).toBe(-1);

    // An expired record leaves the index at the next listing.
    await redis.del(keys.restore('old'));
    expect((await state.list()).map((r) => r.id)).toEqual(['new']);
    expect(await redis.zrange(keys.restores, 0, -1)).toEqual(['new']);
  });

  it('remembers the measured per-queue rate for estimates, ignoring nonsense', async () => {
    expect(await state.measuredRate()).toBeUndefined();
    await state.recordRate(4_321.6);
    await state.recordRate(Number.NaN);
    await state.recordRate(0);
    expect(await state.measuredRate()).toBe(4_322);
  });
});
