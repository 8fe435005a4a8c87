/**
 * The epoch counter and the decision log in Redis. Every write is fenced: it lands only while the
 * writer still holds the leader lease (checked atomically in the same script), so a deposed
 * leader can never record a decision.
 *
 * Redis is not the source of truth for what is visible (the manifests in the store are, G5): if
 * Redis is lost, the epoch counter is raised past the newest manifest before any new round.
 *
 * The leader writes it; a worker only reads it, to learn a decision it missed (PROTOCOL.md step 4).
 */
import type { Redis } from 'ioredis';
import { redisKeys } from '../format/names.js';
import { DecisionConflictError, NotLeaseHolderError } from '../errors.js';
import { REDIS_SCRIPTS } from '../redis/lua-scripts.js';
import { ExchangeDefinition, type IncompleteMark } from '../../gen/tidemark/v1/store.js';

/** An IncompleteMark of one queue, as recorded with the decision. */
export interface QueueMark {
  vhost: string;
  queue: string;
  mark: IncompleteMark;
}

/**
 * A queue of a committed round that is outside its consistent cut (G8): it could not take part
 * (its worker voted NO for it, did not answer, or no worker took it). Its manifest entry is its
 * entry in the parent checkpoint, carried forward with this mark.
 */
export interface OutsideQueue {
  vhost: string;
  queue: string;
  /**
   * The checkpoint whose cut the carried entry still holds (kept from the parent's mark when the
   * queue was already outside); 0 when no earlier checkpoint holds the queue: the manifest leaves
   * it out.
   */
  sinceEpoch: number;
  /** When the queue first could not take part (kept from the parent's mark), leader clock. */
  sinceMs: number;
  /** Why, for people. */
  reason: string;
}

/**
 * Everything besides the votes' staged partitions that a checkpoint manifest is made of. It is
 * recorded with the COMMIT decision, so a new leader can write the manifest of a committed round
 * whose leader died before the manifest landed.
 */
export interface CommitRecord {
  roundId: string;
  parentEpoch: number;
  startedAtMs: number;
  fencedAtMs: number;
  leaderToken: number;
  coordinatorId: string;
  fenceExchange: string;
  vhosts: string[];
  exchanges: ExchangeDefinition[];
  /** The staged partition manifest of every YES vote. */
  partitions: Array<{ workerId: string; key: string; sha256: string }>;
  /** The marks of the checkpoint's queues, kept and new (I5 in coordinator/checkpoint-round.ts); absent in records from before marks. */
  marks?: QueueMark[];
  /**
   * The queues outside the cut (G8). A partition's entry for one of them is not part of the
   * checkpoint, and a queue listed with a `sinceEpoch` is carried from the parent checkpoint's
   * entry. Absent (records before G8, or nothing outside): every queue is inside.
   */
  outside?: OutsideQueue[];
}

export type DecisionState = 'started' | 'committed' | 'aborted';

export interface DecisionRecord {
  epoch: number;
  /** The round's unique id (its fences carry it); absent in records of older versions. */
  roundId?: string;
  state: DecisionState;
  reason: string;
  leaderToken: number;
  atMs: number;
  /** With a COMMIT: what a new leader needs to write the manifest if this one cannot. */
  commit?: CommitRecord;
}

/** JSON form of a record: exchange definitions travel as base64 protobuf. */
type StoredRecord = Omit<DecisionRecord, 'commit'> & { commit?: Omit<CommitRecord, 'exchanges'> & { exchanges: string[] } };

function toStored(record: DecisionRecord): StoredRecord {
  if (!record.commit) return { ...record, commit: undefined };
  return {
    ...record,
    commit: { ...record.commit, exchanges: record.commit.exchanges.map((e) => Buffer.from(ExchangeDefinition.encode(e).finish()).toString('base64')) },
  };
}

function fromStored(stored: StoredRecord): DecisionRecord {
  if (!stored.commit) return { ...stored, commit: undefined };
  return {
    ...stored,
    commit: { ...stored.commit, exchanges: stored.commit.exchanges.map((b) => ExchangeDefinition.decode(Buffer.from(b, 'base64'))) },
  };
}

/**
 * The floor of a new epoch when Redis has lost the epoch counter: above the newest manifest and
 * the newest staged partition, since a deposed leader may still commit an epoch workers staged for.
 */
export function epochFloorAfterLoss(newestVisible: number, newestStaged: number): number {
  return Math.max(newestVisible, newestStaged);
}

export class DecisionLog {
  private readonly keys;

  constructor(
    private readonly redis: Redis,
    namespace: string,
  ) {
    this.keys = redisKeys(namespace);
  }

  /**
   * Takes the next epoch, always above `newestVisible` (the newest manifest in the store). When
   * the counter is missing (Redis lost it), also above `newestStaged()`: an epoch that workers
   * staged for may still be committed by a deposed leader, so its number must not be used again.
   */
  async nextEpoch(holder: string, token: number, newestVisible: number, newestStaged: () => Promise<number>): Promise<number> {
    let epoch = Number(await this.redis.eval(REDIS_SCRIPTS.nextEpoch, 2, this.keys.leader, this.keys.epoch, holder, newestVisible, '1'));
    if (epoch === -2) {
      const floor = epochFloorAfterLoss(newestVisible, await newestStaged());
      epoch = Number(await this.redis.eval(REDIS_SCRIPTS.nextEpoch, 2, this.keys.leader, this.keys.epoch, holder, floor, '0'));
    }
    if (epoch < 0) throw new NotLeaseHolderError(token, 'taking the next epoch');
    return epoch;
  }

  /** Records a round's state; throws if this process no longer holds the lease or it conflicts. */
  async record(holder: string, record: DecisionRecord): Promise<void> {
    const result = Number(
      await this.redis.eval(REDIS_SCRIPTS.recordDecision, 2, this.keys.leader, this.keys.decisions, holder, String(record.epoch), JSON.stringify(toStored(record)), record.state),
    );
    if (result === -1) throw new NotLeaseHolderError(record.leaderToken, `recording epoch ${record.epoch} as ${record.state}`);
    if (result === -2) throw new DecisionConflictError(record.epoch, record.state);
  }

  async get(epoch: number): Promise<DecisionRecord | undefined> {
    const value = await this.redis.hget(this.keys.decisions, String(epoch));
    return value ? fromStored(JSON.parse(value) as StoredRecord) : undefined;
  }

  /**
   * Drops the records of epochs at or below `epoch` that are decided. Only undecided epochs matter
   * to a new leader (presumed abort), and the store, not Redis, says what is visible.
   */
  async forgetDecidedThrough(epoch: number): Promise<void> {
    if (epoch <= 0) return;
    const fields = await this.redis.hkeys(this.keys.decisions);
    const old = fields.filter((f) => Number(f) <= epoch);
    if (old.length === 0) return;
    const values = await this.redis.hmget(this.keys.decisions, ...old);
    const decided = old.filter((_, i) => values[i] && !values[i]!.includes('"state":"started"'));
    if (decided.length > 0) await this.redis.hdel(this.keys.decisions, ...decided);
  }

  /**
   * Drops the records of `epochs`, whatever their state: retention deletes these checkpoints, and
   * a committed record without its manifest would make the next leader's recovery write it again
   * from its staged partitions (store-gc.ts).
   */
  async forget(epochs: number[]): Promise<void> {
    if (epochs.length > 0) await this.redis.hdel(this.keys.decisions, ...epochs.map(String));
  }

  /** Every recorded round, oldest first. */
  async all(): Promise<DecisionRecord[]> {
    const entries = await this.redis.hvals(this.keys.decisions);
    return entries.map((v) => fromStored(JSON.parse(v) as StoredRecord)).sort((a, b) => a.epoch - b.epoch);
  }
}
