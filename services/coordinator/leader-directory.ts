/**
 * Where clients reach the leader: each new leader writes its advertised admin address to Redis
 * next to the lease, and every coordinator reads it back, so that a standby can point a caller at
 * the leader (NotLeaderError's trailer, StatusReply.leader_address; docs/API.md#finding-the-leader).
 *
 * - the record carries the token of the lease it was written under, and is believed only while
 *   that token is the lease's: an old leader's address is never handed out after a change;
 * - it is a hint, never used for any decision: a missing or stale record only costs a client a
 *   retry (the lease stays the one source of who leads).
 */
import type { Redis } from 'ioredis';
import { errorMessage, type Logger, redisKeys } from '../core/index.js';
import type { LeaderLease } from './leader-lease.js';

/** Who leads now, as a standby sees it. */
export interface KnownLeader {
  id: string;
  token: number;
  /** host:port of its admin API; undefined if it has not said (yet). */
  address?: string;
}

/** Parses `<token> <address>`; undefined for anything else. */
export function parseLeaderAddress(value: string | null | undefined): { token: number; address: string } | undefined {
  const match = /^(\d+) (\S+)$/.exec(value ?? '');
  return match ? { token: Number(match[1]), address: match[2] } : undefined;
}

export class LeaderDirectory {
  private readonly key: string;
  private known: KnownLeader | undefined;

  constructor(
    private readonly redis: Pick<Redis, 'get' | 'set'>,
    private readonly lease: Pick<LeaderLease, 'current'>,
    namespace: string,
    private readonly log: Logger,
  ) {
    this.key = redisKeys(namespace).leaderAddress;
  }

  /** The leader as last read (refresh()), if any holds the lease. */
  get leader(): KnownLeader | undefined {
    return this.known;
  }

  /** Called by a new leader: clients are sent to `address` while lease `token` holds. */
  async publish(token: number, address: string): Promise<void> {
    await this.redis.set(this.key, `${token} ${address}`);
    await this.refresh();
  }

  /** Reads the lease and the address record; keeps the last answer if Redis does not answer. */
  async refresh(): Promise<KnownLeader | undefined> {
    try {
      const [current, record] = await Promise.all([this.lease.current(), this.redis.get(this.key)]);
      const published = parseLeaderAddress(record);
      this.known = current && { id: current.id, token: current.token, address: published?.token === current.token ? published.address : undefined };
    } catch (err) {
      this.log.debug('cannot read who leads; keeping the last answer', { err: errorMessage(err) });
    }
    return this.known;
  }
}
