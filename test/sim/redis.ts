/**
 * What Redis holds for the protocol, in the simulation: the lease, the token and epoch counters
 * and the decision log, changed only by Tidemark's own Lua scripts (ACQUIRE, RENEW, RELEASE of
 * services/coordinator/leader-lease.ts; NEXT_EPOCH, RECORD of services/core/state/decision-log.ts),
 * which an in-memory Redis runs as Redis would (lua-redis.ts), under the same key names
 * (redisKeys). The methods below only pass each script its KEYS and ARGV the way the shipped
 * callers do, and keep the checker's ghost state: which acquisition of the lease a holder string
 * names (never stored in Redis), and every decision write that landed.
 *
 * `wipe` models losing Redis (G5): everything, counters included, is gone.
 *
 * test/integration/redis-model-conformance.test.ts makes the same calls against a real Redis and
 * this model and requires the same answers.
 */
import { type DecisionRecord, redisKeys } from '../../services/core/index.js';
import { LuaRedis } from './lua-redis.js';

/**
 * A decision-log entry as the real code writes it (every record carries its round id), plus, for
 * the checker only, which acquisition of the lease the writer believed it held.
 */
export interface SimDecisionRecord extends DecisionRecord {
  roundId: string;
  ghostAcquisition: number;
}

export interface LeaseValue {
  token: number;
  /** The stored value: `<token>:<coordinator id>:<nonce>` (LeaderLease.holder), or without the nonce (KnownGaps). */
  value: string;
  /** Ghost: which acquisition this is, counted over every life of Redis (never stored in Redis). */
  acquisition: number;
  expiresAt: number;
}

const KEYS = redisKeys('sim');

export class RedisModel {
  private readonly redis = new LuaRedis();
  /** Bumped when Redis is lost, so the checker can tell two lives of an epoch number apart. */
  generation = 0;
  /** Ghost: acquisitions of the lease so far, over every life of Redis. */
  private acquisitions = 0;
  /** Ghost: the acquisition each holder string was stored by. */
  private readonly acquisitionOf = new Map<string, number>();
  /** The decision log as parsed records, kept in step with the hash (only RECORD writes it). */
  private readonly parsed = new Map<number, SimDecisionRecord>();
  /** The time of the latest call, for reads that do not say (the lease's expiry is checked by holder()). */
  private now = 0;
  /** Every decision-log write that landed, for the checker. */
  onWrite: (record: SimDecisionRecord, holder: LeaseValue | undefined) => void = () => {};

  /** The lease as stored, while it has not expired, with its ghost acquisition. */
  get lease(): LeaseValue | undefined {
    const value = this.redis.get(KEYS.leader, this.now);
    if (value === undefined) return undefined;
    return { token: Number(value.slice(0, value.indexOf(':'))), value, acquisition: this.acquisitionOf.get(value) ?? 0, expiresAt: this.redis.expiresAt(KEYS.leader, this.now)! };
  }

  /** GET of the token counter (what a worker reads as its token floor). */
  get leaderTokenCounter(): number {
    return Number(this.redis.get(KEYS.leaderToken, this.now) ?? 0);
  }

  /** The decision log: HGETALL, parsed. */
  get decisions(): ReadonlyMap<number, SimDecisionRecord> {
    return this.parsed;
  }

  /** The holder string while the lease has not expired (PX). */
  holder(now: number): string | undefined {
    this.now = now;
    return this.redis.get(KEYS.leader, now);
  }

  /**
   * ACQUIRE with `ARGV[1]` = `who` (`<coordinator id>:<nonce>`, or the id alone, KnownGaps): the
   * token, 0 if the lease is held; and, for the checker, the acquisition it starts.
   */
  tryAcquire(who: string, leaseMs: number, floor: number, now: number): { token: number; acquisition: number } {
    this.now = now;
    const token = Number(this.redis.eval('acquireLease', [KEYS.leader, KEYS.leaderToken], [who, leaseMs, floor], now));
    if (token === 0) return { token, acquisition: 0 };
    const acquisition = ++this.acquisitions;
    this.acquisitionOf.set(`${token}:${who}`, acquisition);
    return { token, acquisition };
  }

  renew(holder: string, leaseMs: number, now: number): boolean {
    this.now = now;
    return this.redis.eval('renewLease', [KEYS.leader], [holder, leaseMs], now) === 1;
  }

  release(holder: string, now: number): void {
    this.now = now;
    this.redis.eval('releaseLease', [KEYS.leader], [holder], now);
  }

  /**
   * NEXT_EPOCH: -1 if `holder` does not hold the lease; -2 if `askIfMissing` and the counter is
   * missing (nothing changed); otherwise the counter, raised to at least `floor`, plus one.
   */
  nextEpoch(holder: string, floor: number, now: number, askIfMissing = false): number {
    this.now = now;
    return Number(this.redis.eval('nextEpoch', [KEYS.leader, KEYS.epoch], [holder, floor, askIfMissing ? '1' : '0'], now));
  }

  /**
   * RECORD: -1 not the holder, 0 a `started` over an existing entry (kept), 1 written or already
   * so, -2 the epoch was decided otherwise. `fenced: false` exists only for a broken variant: the
   * shipped script runs with its fence defeated by an injected fault (the lease key reads as the
   * writer's holder string), so it lands whoever holds the lease.
   */
  record(holder: string, record: SimDecisionRecord, now: number, fenced = true): -2 | -1 | 0 | 1 {
    this.now = now;
    const field = String(record.epoch);
    const before = this.redis.hget(KEYS.decisions, field, now);
    const result = Number(this.redis.eval('recordDecision', [KEYS.leader, KEYS.decisions], [holder, field, JSON.stringify(record), record.state], now, fenced ? undefined : { key: KEYS.leader, value: holder }));
    const after = this.redis.hget(KEYS.decisions, field, now);
    if (after !== before) this.written(record);
    return result as -2 | -1 | 0 | 1;
  }

  /** Every recorded round, oldest first (DecisionLog.all). */
  all(): SimDecisionRecord[] {
    return [...this.parsed.values()].sort((a, b) => a.epoch - b.epoch);
  }

  /** DecisionLog.forget: HDEL of the epochs' records (retention deletes their checkpoints). */
  forget(epochs: number[], now: number): void {
    this.now = now;
    this.redis.hdel(KEYS.decisions, epochs.map(String), now);
    for (const epoch of epochs) this.parsed.delete(epoch);
  }

  wipe(): void {
    this.redis.flushall();
    this.parsed.clear();
    this.generation += 1;
  }

  private written(record: SimDecisionRecord): void {
    this.parsed.set(record.epoch, record);
    this.onWrite(record, this.lease);
  }
}
