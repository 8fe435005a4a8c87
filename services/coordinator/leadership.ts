/**
 * Competing for the leader lease (leader-lease.ts): one tick renews a held lease, or, when the
 * lease is free, takes it and makes this coordinator leader. What a leader does on winning
 * (recovery, the first discovery pass) and on losing the lease is the coordinator's.
 *
 * - one renewal or one acquisition at a time; a renewal may run while a new leader recovers, so
 *   becoming leader may take longer than the lease without the lease running out;
 * - a refused renewal steps down at once; a renewal that fails (Redis unreachable) does not, as
 *   the lease stays `held` only for a lease time after the last renewal sent (lease-holding.ts);
 * - a new token is taken above every token the store shows (newestStoredToken) and every token a
 *   worker said it has seen (raiseFloor), so a Redis that lost its counter cannot hand out a
 *   token workers would refuse, or one a deposed leader still writes with;
 * - a lease taken while stopping, or whose leader could not start leading, is released at once:
 *   no coordinator sits on a lease without leading.
 */
import { type Catalog, errorMessage, type Logger, withTimeLimit } from '../core/index.js';
import type { LeaderLease } from './leader-lease.js';
import { STEP_LIMIT_MS } from './scheduler.js';

export interface LeadershipOptions {
  lease: LeaderLease;
  catalog: Catalog;
  leaseTime: number;
  log: Logger;
  stopped(): boolean;
  /** Recovery and the first discovery pass; the lease is released if it fails. */
  becomeLeader(): Promise<void>;
  /** Stops leading until the lease is won again. */
  stepDown(): void;
}

export class Leadership {
  private renewing = false;
  private acquiring = false;
  /** The highest token a worker told us it has seen: new leases start above it. */
  private tokenFloor = 0;

  constructor(private readonly options: LeadershipOptions) {}

  /** A worker has seen `token`: the next lease this coordinator takes starts above it. */
  raiseFloor(token: number): void {
    this.tokenFloor = Math.max(this.tokenFloor, token);
  }

  /** One renewal or one acquisition at a time; a renewal may run while a new leader recovers. */
  async tick(): Promise<void> {
    const { lease, catalog, leaseTime, log } = this.options;
    if (this.options.stopped()) return;
    // Held leases are renewed, also while recovery runs before the leader's first round.
    if (lease.token > 0) {
      if (this.renewing) return;
      this.renewing = true;
      try {
        if (!(await withTimeLimit(lease.renew(), Math.max(500, Math.floor(leaseTime / 2)), 'leader lease renewal'))) {
          this.options.stepDown();
          log.warn('leader lease lost: stepping down', { leaderToken: lease.token });
        }
      } catch (err) {
        log.warn('leader lease renewal failed: this coordinator stops leading when the lease runs out', { leaderToken: lease.token, err: errorMessage(err) });
      } finally {
        this.renewing = false;
      }
      return;
    }
    if (this.acquiring) return;
    this.acquiring = true;
    try {
      // Standbys poll cheaply; the store is read only when the lease is free.
      const limit = Math.max(1_000, leaseTime);
      if (await withTimeLimit(lease.current(), limit, 'reading the leader lease')) return;
      const floor = Math.max(this.tokenFloor, await withTimeLimit(newestStoredToken(catalog), STEP_LIMIT_MS, 'reading the newest stored leader token'));
      if (await withTimeLimit(lease.tryAcquire(floor), limit, 'taking the leader lease')) {
        if (this.options.stopped()) {
          // stop() ran while the lease was being taken: hand it straight back.
          await lease.release().catch(() => {});
          return;
        }
        log.info('leading', { leaderToken: lease.token });
        try {
          await withTimeLimit(this.options.becomeLeader(), STEP_LIMIT_MS, 'becoming leader (recovery and the first discovery pass)');
        } catch (err) {
          // Do not sit on a lease without leading: let this or another coordinator try again.
          await lease.release().catch(() => {});
          throw err;
        }
      }
    } catch (err) {
      log.warn('leadership check failed', { err: errorMessage(err) });
    } finally {
      this.acquiring = false;
    }
  }
}

/**
 * A floor for new tokens if Redis lost its counter: the leader token of the newest manifest,
 * and of the newest staged round (its leader may still be running, unaware it was deposed).
 */
export async function newestStoredToken(catalog: Catalog): Promise<number> {
  const latest = await catalog.latestEpoch();
  const visible = latest > 0 ? (await catalog.get(latest)).leaderToken : 0;
  return Math.max(visible, (await catalog.newestStaged()).leaderToken);
}
