/**
 * A worker adopts a leader token above every one it has seen only once Redis confirms it: the
 * token is the one of the lease held right now (docs/SECURITY.md#transport-security). Without
 * this, anyone able to reach a worker could send `Assign{leader_token: huge, queues: []}`: the
 * worker would drop every capture and refuse the real leader from then on. A token at or below
 * the newest seen needs no look-up (the Participant's floor refuses or accepts it).
 */
import { FailedPreconditionError, redisKeys, StaleLeaderError, TransientError } from '../core/index.js';

/** The one Redis read the confirmation needs (ioredis satisfies it). */
export interface LeaseReader {
  get(key: string): Promise<string | null>;
}

export class LeaderConfirmation {
  private readonly keys;

  constructor(
    private readonly redis: LeaseReader,
    namespace: string,
  ) {
    this.keys = redisKeys(namespace);
  }

  /**
   * Resolves when `token` (above `seen`) is the current lease's; otherwise throws, changing
   * nothing: StaleLeaderError when a newer lease exists, FailedPreconditionError when Redis never
   * issued the token (a forgery), TransientError when no lease is held right now (the caller may
   * retry once it holds one).
   */
  async confirm(token: number, seen: number): Promise<void> {
    if (token <= seen) return;
    let lease: string | null;
    let issued: string | null;
    try {
      lease = await this.redis.get(this.keys.leader);
      issued = lease === null ? await this.redis.get(this.keys.leaderToken) : null;
    } catch (err) {
      throw new TransientError(`cannot confirm leader token ${token} against the lease in Redis: ${(err as Error).message}; nothing was changed, retry`, { cause: err });
    }
    // `<token>:<coordinator id>:<acquisition nonce>` (coordinator/leader-lease.ts).
    const current = lease === null ? 0 : Number(lease.slice(0, lease.indexOf(':')));
    if (current === token) return;
    if (current > token) throw new StaleLeaderError(token, current);
    const newestIssued = Math.max(current, Number(issued ?? 0) || 0);
    if (token > newestIssued) {
      throw new FailedPreconditionError(
        `leader token ${token} was never issued (the newest lease token in Redis is ${newestIssued}): the call is refused and nothing was changed. ` +
          'Only the coordinator holding the leader lease may call a worker.',
      );
    }
    throw new TransientError(`leader token ${token} is not the lease held right now (none is held); nothing was changed, retry once a leader holds it`);
  }
}
