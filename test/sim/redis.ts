/**
 * Model of what Redis holds for the protocol, with the exact semantics of the Lua scripts in
 * services/coordinator/leader-lease.ts (ACQUIRE, RENEW, RELEASE) and services/core/decision-log.ts
 * (NEXT_EPOCH, RECORD): a lease whose stored value is the holder string
 * `<token>:<coordinator id>:<nonce>`, with a fencing token that never falls to or below the
 * store's floor; an epoch counter raised past the newest manifest (and, when the counter is
 * missing, first reported as missing so the caller can raise it above the newest staged epoch
 * too); and a decision log whose writes
 * land only from the lease holder (the same holder string) and where a decided epoch keeps its
 * decision (I4).
 *
 * `wipe` models losing Redis (G5): everything, counters included, is gone.
 *
 * The scripts run inside Redis, so they cannot be shared with the model; instead
 * test/integration/redis-model-conformance.test.ts makes the same calls against a real Redis and
 * this model and requires the same answers.
 */
import type { DecisionRecord } from '../../services/core/decision-log.js';

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

export class RedisModel {
  lease: LeaseValue | undefined;
  leaderTokenCounter = 0;
  /** The epoch counter; undefined while the key does not exist (before the first round, after a loss). */
  epochCounter: number | undefined;
  readonly decisions = new Map<number, SimDecisionRecord>();
  /** Bumped when Redis is lost, so the checker can tell two lives of an epoch number apart. */
  generation = 0;
  /** Ghost: acquisitions of the lease so far, over every life of Redis. */
  private acquisitions = 0;
  /** Every decision-log write that landed, for the checker. */
  onWrite: (record: SimDecisionRecord, holder: LeaseValue | undefined) => void = () => {};

  /** The holder string while the lease has not expired (PX). */
  holder(now: number): string | undefined {
    if (this.lease && this.lease.expiresAt <= now) this.lease = undefined;
    return this.lease?.value;
  }

  /**
   * ACQUIRE with `ARGV[1]` = `who` (`<coordinator id>:<nonce>`, or the id alone, KnownGaps): the
   * token, 0 if the lease is held; and, for the checker, the acquisition it starts.
   */
  tryAcquire(who: string, leaseMs: number, floor: number, now: number): { token: number; acquisition: number } {
    if (this.holder(now) !== undefined) return { token: 0, acquisition: 0 };
    let token = ++this.leaderTokenCounter;
    if (token <= floor) {
      token = floor + 1;
      this.leaderTokenCounter = token;
    }
    const acquisition = ++this.acquisitions;
    this.lease = { token, value: `${token}:${who}`, acquisition, expiresAt: now + leaseMs };
    return { token, acquisition };
  }

  renew(holder: string, leaseMs: number, now: number): boolean {
    if (this.holder(now) !== holder) return false;
    this.lease!.expiresAt = now + leaseMs;
    return true;
  }

  release(holder: string, now: number): void {
    if (this.holder(now) === holder) this.lease = undefined;
  }

  /**
   * NEXT_EPOCH: -1 if `holder` does not hold the lease; -2 if `askIfMissing` and the counter is
   * missing (nothing changed); otherwise the counter, raised to at least `floor`, plus one.
   */
  nextEpoch(holder: string, floor: number, now: number, askIfMissing = false): number {
    if (this.holder(now) !== holder) return -1;
    if (askIfMissing && this.epochCounter === undefined) return -2;
    this.epochCounter = Math.max(this.epochCounter ?? 0, floor) + 1;
    return this.epochCounter;
  }

  /**
   * RECORD: -1 not the holder, 0 a `started` over an existing entry (kept), 1 written or already
   * so, -2 the epoch was decided otherwise. `fenced: false` exists only for a broken variant.
   */
  record(holder: string, record: SimDecisionRecord, now: number, fenced = true): -2 | -1 | 0 | 1 {
    const current = this.holder(now);
    if (fenced && current !== holder) return -1;
    const existing = this.decisions.get(record.epoch);
    if (existing && record.state === 'started') return 0;
    if (existing && existing.state !== 'started') return existing.state === record.state ? 1 : -2;
    this.decisions.set(record.epoch, record);
    this.onWrite(record, this.lease);
    return 1;
  }

  /** Every recorded round, oldest first (DecisionLog.all). */
  all(): SimDecisionRecord[] {
    return [...this.decisions.values()].sort((a, b) => a.epoch - b.epoch);
  }

  wipe(): void {
    this.lease = undefined;
    this.leaderTokenCounter = 0;
    this.epochCounter = undefined;
    this.decisions.clear();
    this.generation += 1;
  }
}
