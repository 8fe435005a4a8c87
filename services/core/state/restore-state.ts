/**
 * A restore's durable state in Redis, so that a restore cut short by any crash (worker,
 * coordinator, CLI) can continue where it stopped.
 *
 * - `restore:<id>`: the record (the request as sent, the checkpoint it resolved to, the state).
 *   Written by the coordinator running the restore.
 * - `restore:<id>:queues`: one hash for every queue's progress, under three kinds of field:
 *   - `s:<queue>`: "1" once a worker is about to declare the target and publish into it. A resumed
 *     restore does not refuse such a target for holding messages: they are its own.
 *   - `c:<queue>`: `<count>:<offset>`, the longest prefix of the queue's messages the target has
 *     confirmed: that many messages, the last at that journal offset. Written by the worker that
 *     publishes, only ever forwards (a late write of an older attempt cannot move it back).
 *   - `d:<queue>`: JSON `{ok, error}` once the queue finished. Written by the coordinator.
 * - `restores`: the ids, scored by creation time, for listing.
 *
 * Finished restores expire after a week; a running one has no expiry.
 */
import type { Redis } from 'ioredis';
import { redisKeys } from '../format/names.js';
import { REDIS_SCRIPTS } from '../redis/lua-scripts.js';
import { RestoreAssignmentError } from '../errors.js';

export type RestoreState = 'running' | 'cancelled' | 'interrupted' | 'done' | 'failed';

export interface RestoreRecord {
  id: string;
  /** The epoch the request resolved to (a resume restores the same checkpoint). */
  checkpoint: number;
  /** The RestoreRequest as received, with checkpoint/at replaced by the resolved epoch. */
  request: Record<string, unknown>;
  state: RestoreState;
  createdAtMs: number;
  updatedAtMs: number;
  queues: number;
  messages: number;
  /**
   * The request's raw target URL had a password, which is not stored (request.targetAmqpUrl is
   * kept without it): a resume needs it from the coordinator's memory or from the caller.
   */
  rawTargetPassword?: boolean;
}

export interface QueueProgress {
  started: boolean;
  /** Messages of the prefix the target confirmed, in order. */
  confirmed: number;
  /** Journal offset of the last of them; -1 before the first. */
  offset: number;
  finished?: { ok: boolean; error: string };
}

const FINISHED_TTL_S = 7 * 24 * 3600;

/**
 * What a restore id may be (the coordinator makes `r<epoch>-<hex>`): ids become Redis keys, so
 * callers are held to this before one is used.
 */
export const RESTORE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;


export class RestoreStateStore {
  private readonly keys;

  constructor(
    private readonly redis: Redis,
    namespace: string,
  ) {
    this.keys = redisKeys(namespace);
  }

  async create(record: RestoreRecord): Promise<void> {
    await this.redis.multi().set(this.keys.restore(record.id), JSON.stringify(record)).zadd(this.keys.restores, record.createdAtMs, record.id).exec();
  }

  async get(id: string): Promise<RestoreRecord | undefined> {
    const text = await this.redis.get(this.keys.restore(id));
    return text ? (JSON.parse(text) as RestoreRecord) : undefined;
  }

  async setState(id: string, state: RestoreState): Promise<void> {
    const record = await this.get(id);
    if (!record) return;
    record.state = state;
    record.updatedAtMs = Date.now();
    const multi = this.redis.multi().set(this.keys.restore(id), JSON.stringify(record));
    if (state === 'running') multi.persist(this.keys.restoreQueues(id));
    else multi.expire(this.keys.restore(id), FINISHED_TTL_S).expire(this.keys.restoreQueues(id), FINISHED_TTL_S);
    await multi.exec();
  }

  /** Every known restore, newest first (expired ones are dropped from the index). */
  async list(limit = 100): Promise<RestoreRecord[]> {
    const ids = await this.redis.zrevrange(this.keys.restores, 0, limit - 1);
    const records = await Promise.all(ids.map((id) => this.get(id)));
    const gone = ids.filter((_, i) => !records[i]);
    if (gone.length > 0) await this.redis.zrem(this.keys.restores, ...gone);
    return records.filter((r): r is RestoreRecord => r !== undefined);
  }

  async progress(id: string): Promise<Map<string, QueueProgress>> {
    const fields = await this.redis.hgetall(this.keys.restoreQueues(id));
    const byQueue = new Map<string, QueueProgress>();
    const entry = (key: string) => {
      let p = byQueue.get(key);
      if (!p) byQueue.set(key, (p = { started: false, confirmed: 0, offset: -1 }));
      return p;
    };
    for (const [field, value] of Object.entries(fields)) {
      const kind = field.slice(0, 2);
      const key = field.slice(2);
      if (kind === 's:') entry(key).started = true;
      else if (kind === 'c:') {
        const [count, offset] = value.split(':').map(Number);
        Object.assign(entry(key), { confirmed: count, offset });
      } else if (kind === 'd:') entry(key).finished = JSON.parse(value) as { ok: boolean; error: string };
    }
    return byQueue;
  }

  /**
   * The leader hands a queue of a restore to a worker (`assignment` names the worker and the
   * attempt): from now on only a writer holding this assignment records the queue's progress.
   */
  async assign(id: string, queueKey: string, assignment: string): Promise<void> {
    await this.redis.hset(this.keys.restoreQueues(id), `a:${queueKey}`, assignment);
  }

  /**
   * Marks the queue started. With `assignment` (a worker's writes), refused with
   * RestoreAssignmentError unless the leader assigned the queue of this restore to it.
   */
  async markStarted(id: string, queueKey: string, assignment?: string): Promise<void> {
    if (assignment === undefined) {
      await this.redis.hset(this.keys.restoreQueues(id), `s:${queueKey}`, '1');
      return;
    }
    const written = await this.redis.eval(REDIS_SCRIPTS.markRestoreStarted, 1, this.keys.restoreQueues(id), `s:${queueKey}`, `a:${queueKey}`, assignment);
    if (Number(written) < 0) throw new RestoreAssignmentError(id, queueKey);
  }

  /** Moves the confirmed prefix forward; with `assignment`, only for the assigned writer (as markStarted). */
  async advance(id: string, queueKey: string, confirmed: number, offset: number, assignment?: string): Promise<void> {
    const args: Array<string | number> = [`c:${queueKey}`, confirmed, offset];
    if (assignment !== undefined) args.push(`a:${queueKey}`, assignment);
    const written = await this.redis.eval(REDIS_SCRIPTS.advanceRestore, 1, this.keys.restoreQueues(id), ...args);
    if (Number(written) < 0) throw new RestoreAssignmentError(id, queueKey);
  }

  async markFinished(id: string, queueKey: string, finished: { ok: boolean; error: string }): Promise<void> {
    await this.redis.hset(this.keys.restoreQueues(id), `d:${queueKey}`, JSON.stringify(finished));
  }

  /** Clears a failed queue's outcome so that a resume tries it again. */
  async clearFinished(id: string, queueKey: string): Promise<void> {
    await this.redis.hdel(this.keys.restoreQueues(id), `d:${queueKey}`);
  }

  async measuredRate(): Promise<number | undefined> {
    const value = Number(await this.redis.get(this.keys.restoreRate));
    return Number.isFinite(value) && value > 0 ? value : undefined;
  }

  async recordRate(messagesPerSecond: number): Promise<void> {
    if (Number.isFinite(messagesPerSecond) && messagesPerSecond > 0) await this.redis.set(this.keys.restoreRate, String(Math.round(messagesPerSecond)));
  }
}
