/**
 * Worker membership through Redis leases: each worker renews its entry in a sorted set scored by
 * lease expiry; the coordinator reads the entries whose lease has not expired.
 */
import type { Redis } from 'ioredis';
import { type Clock, systemClock } from '../infrastructure/clock.js';
import { redisKeys } from '../format/names.js';

export interface WorkerRegistration {
  id: string;
  /** host:port of the worker's gRPC server. */
  address: string;
  startedAtMs: number;
}

export class Membership {
  private readonly keys;

  constructor(
    private readonly redis: Redis,
    namespace: string,
    private readonly leaseMs: number,
    /** Lease expiries are scored on it (every coordinator and worker must share one time base). */
    private readonly clock: Clock = systemClock,
  ) {
    this.keys = redisKeys(namespace);
  }

  /** Registers or renews a worker's lease. */
  async renew(worker: WorkerRegistration): Promise<void> {
    await this.redis
      .multi()
      .zadd(this.keys.workers, this.clock.now() + this.leaseMs, worker.id)
      .hset(this.keys.workerInfo, worker.id, JSON.stringify(worker))
      .exec();
  }

  /** Removes a worker at once (a clean shutdown), so its queues move without waiting for expiry. */
  async leave(id: string): Promise<void> {
    await this.redis.multi().zrem(this.keys.workers, id).hdel(this.keys.workerInfo, id).exec();
  }

  /** Workers whose lease is live, sorted by id. */
  async live(): Promise<WorkerRegistration[]> {
    const now = this.clock.now();
    const ids = await this.redis.zrangebyscore(this.keys.workers, now, '+inf');
    if (ids.length === 0) return [];
    const infos = await this.redis.hmget(this.keys.workerInfo, ...ids);
    const workers: WorkerRegistration[] = [];
    infos.forEach((info) => {
      if (info) workers.push(JSON.parse(info) as WorkerRegistration);
    });
    // Expired entries are dropped lazily so the set does not grow with dead workers.
    await this.redis.zremrangebyscore(this.keys.workers, '-inf', now - 10 * this.leaseMs);
    return workers.sort((a, b) => a.id.localeCompare(b.id));
  }
}
