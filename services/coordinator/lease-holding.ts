/**
 * What a coordinator holds of the leader lease, without I/O: the token, the holder string its
 * writes are fenced with, and how long the lease surely lasts. leader-lease.ts runs the Redis
 * scripts and tells this what they answered; the simulation (test/sim) drives this same state.
 *
 * - the holder string is `<token>:<claim>`, the value ACQUIRE stores, and the claim names the
 *   acquisition (`<coordinator id>:<nonce>`), not just the process: if Redis is emptied and the
 *   same coordinator wins again with the same token number, a write begun under the old lease
 *   still fails its fence;
 * - the lease is `held` only until a lease time after the last acquire or renewal that succeeded
 *   was SENT: a leader paused past its lease stops acting as one before anyone else can lead;
 * - a refused renewal drops the token; so does a release, before Redis is told, so a release
 *   that cannot reach Redis does not leave this process renewing a lease it does not lead with.
 */
export class LeaseHolding {
  private current = 0;
  private claim = '';
  /** The lease surely lasts until then. */
  private validUntil = 0;

  constructor(private readonly leaseMs: number) {}

  /** What ACQUIRE is asked to store after the token: this acquisition's name. */
  static claim(coordinatorId: string, nonce: string): string {
    return `${coordinatorId}:${nonce}`;
  }

  /** The token of the lease held, 0 when not leader. */
  get token(): number {
    return this.current;
  }

  /** The value stored under the leader key while this acquisition holds the lease. */
  get holder(): string {
    return `${this.current}:${this.claim}`;
  }

  /** True while a lease is held and it cannot have run out yet. */
  held(nowMs: number): boolean {
    return this.current > 0 && nowMs < this.validUntil;
  }

  /** ACQUIRE, sent at `sentAtMs` with `claim`, answered `token` (0: someone else holds it). */
  acquired(token: number, claim: string, sentAtMs: number): void {
    if (token <= 0) return;
    this.current = token;
    this.claim = claim;
    this.validUntil = sentAtMs + this.leaseMs;
  }

  /** RENEW, sent at `sentAtMs`, answered: refused means the lease is lost. */
  renewed(ok: boolean, sentAtMs: number): void {
    if (ok) this.validUntil = sentAtMs + this.leaseMs;
    else this.current = 0;
  }

  /** Stops holding the lease; returns the holder string to RELEASE with. */
  release(): string {
    const holder = this.holder;
    this.current = 0;
    return holder;
  }
}
