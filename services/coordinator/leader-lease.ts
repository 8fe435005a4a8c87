/**
 * Leadership through a Redis lease with a fencing token. The token grows with every new lease,
 * rides on every worker RPC and every decision write, and lets workers and the decision log
 * refuse a deposed leader that has not noticed yet. What this process holds (token, holder
 * string, how long it surely lasts) is the pure LeaseHolding (lease-holding.ts), which the
 * simulation drives too; this file runs the scripts.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { type Clock, REDIS_SCRIPTS, redisKeys, systemClock } from '../core/index.js';
import { LeaseHolding } from './lease-holding.js';

export class LeaderLease {
  private readonly keys;
  private readonly holding: LeaseHolding;

  constructor(
    private readonly redis: Redis,
    namespace: string,
    private readonly coordinatorId: string,
    private readonly leaseMs: number,
    /** How long the lease surely lasts is measured on it. */
    private readonly clock: Clock = systemClock,
  ) {
    this.keys = redisKeys(namespace);
    this.holding = new LeaseHolding(leaseMs);
  }

  /** The token of the lease this process holds, 0 when it is not leader. */
  get token(): number {
    return this.holding.token;
  }

  /**
   * The value stored under the leader key while this process holds the lease. It names this
   * acquisition, not just this process (LeaseHolding).
   */
  get holder(): string {
    return this.holding.holder;
  }

  /** True while this process holds the lease and it cannot have run out yet. */
  get held(): boolean {
    return this.holding.held(this.clock.now());
  }

  /**
   * Takes the lease if nobody holds it; returns true if this process is now leader. The new token
   * is above `floor`, the newest leader token recorded in the store.
   */
  async tryAcquire(floor = 0): Promise<boolean> {
    const claim = LeaseHolding.claim(this.coordinatorId, randomBytes(6).toString('hex'));
    const sentAt = this.clock.now();
    const token = Number(await this.redis.eval(REDIS_SCRIPTS.acquireLease, 2, this.keys.leader, this.keys.leaderToken, claim, this.leaseMs, floor));
    this.holding.acquired(token, claim, sentAt);
    return token > 0;
  }

  /** Extends the lease; false means it was lost (expired and maybe taken by another). */
  async renew(): Promise<boolean> {
    if (this.token === 0) return false;
    const sentAt = this.clock.now();
    const ok = Number(await this.redis.eval(REDIS_SCRIPTS.renewLease, 1, this.keys.leader, this.holder, this.leaseMs)) === 1;
    this.holding.renewed(ok, sentAt);
    return ok;
  }

  /** Gives the lease up. Even if Redis cannot be told, this process stops holding it (it expires). */
  async release(): Promise<void> {
    if (this.token === 0) return;
    await this.redis.eval(REDIS_SCRIPTS.releaseLease, 1, this.keys.leader, this.holding.release());
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
