/**
 * Leadership through a Redis lease with a fencing token. The token grows with every new lease,
 * rides on every worker RPC and every decision write, and lets workers and the decision log
 * refuse a deposed leader that has not noticed yet.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { redisKeys } from '../core/index.js';

// The token never falls to or below `floor` (the newest token the store has seen), so a leader
// elected after Redis lost its counter still outranks every leader before it.
const ACQUIRE = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  local token = redis.call('INCR', KEYS[2])
  local floor = tonumber(ARGV[3])
  if token <= floor then
    token = floor + 1
    redis.call('SET', KEYS[2], token)
  end
  redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'PX', ARGV[2])
  return token
end
return 0`;

const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`;

export class LeaderLease {
  private readonly keys;
  /** The token of the lease this process holds, 0 when it is not leader. */
  token = 0;

  constructor(
    private readonly redis: Redis,
    namespace: string,
    private readonly coordinatorId: string,
    private readonly leaseMs: number,
  ) {
    this.keys = redisKeys(namespace);
  }

  /**
   * The value stored under the leader key while this process holds the lease. It names this
   * acquisition, not just this process: if Redis is emptied and the same coordinator wins again
   * with the same token number, a write begun under the old lease still fails its fence.
   */
  get holder(): string {
    return `${this.token}:${this.coordinatorId}:${this.nonce}`;
  }

  private nonce = '';
  /** The lease surely lasts until then: a lease time after the last acquire or renewal was sent. */
  private validUntil = 0;

  /** True while this process holds the lease and it cannot have run out yet. */
  get held(): boolean {
    return this.token > 0 && Date.now() < this.validUntil;
  }

  /**
   * Takes the lease if nobody holds it; returns true if this process is now leader. The new token
   * is above `floor`, the newest leader token recorded in the store.
   */
  async tryAcquire(floor = 0): Promise<boolean> {
    const nonce = randomBytes(6).toString('hex');
    const sentAt = Date.now();
    const token = Number(await this.redis.eval(ACQUIRE, 2, this.keys.leader, this.keys.leaderToken, `${this.coordinatorId}:${nonce}`, this.leaseMs, floor));
    if (token > 0) {
      this.token = token;
      this.nonce = nonce;
      this.validUntil = sentAt + this.leaseMs;
    }
    return token > 0;
  }

  /** Extends the lease; false means it was lost (expired and maybe taken by another). */
  async renew(): Promise<boolean> {
    if (this.token === 0) return false;
    const sentAt = Date.now();
    const ok = Number(await this.redis.eval(RENEW, 1, this.keys.leader, this.holder, this.leaseMs)) === 1;
    if (!ok) this.token = 0;
    else this.validUntil = sentAt + this.leaseMs;
    return ok;
  }

  /** Gives the lease up. Even if Redis cannot be told, this process stops holding it (it expires). */
  async release(): Promise<void> {
    if (this.token === 0) return;
    const holder = this.holder;
    this.token = 0;
    await this.redis.eval(RELEASE, 1, this.keys.leader, holder);
  }

  /** Who holds the lease now (token and id), if anyone. */
  async current(): Promise<{ token: number; id: string } | undefined> {
    const value = await this.redis.get(this.keys.leader);
    if (!value) return undefined;
    // `<token>:<coordinator id>:<acquisition nonce>`; the id itself may hold colons.
    const first = value.indexOf(':');
    const last = value.lastIndexOf(':');
    return { token: Number(value.slice(0, first)), id: value.slice(first + 1, last > first ? last : undefined) };
  }
}
