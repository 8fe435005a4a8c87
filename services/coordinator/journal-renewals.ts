/**
 * Renewed journals. A journal whose queue's checkpoints were taken from an earlier journal of the
 * same name is *renewed*: the earlier one was deleted (shed under disk pressure, or by someone
 * else) and the checkpoints' offsets do not match the new one. A renewed queue's capture starts
 * afresh from its new journal, and its next checkpoint marks it possibly incomplete: what entered
 * it in between is in no checkpoint (I5, docs/PROTOCOL.md).
 *
 * Known from the broker and the latest checkpoint alone, on any leader: every journal records
 * when it was declared ({@link CREATED_AT_ARGUMENT}), and a journal declared after the round of
 * the queue's latest checkpoint started is renewed. A shed queue may be left out of checkpoints
 * while it waits, so shed journals are also recorded in Redis (shed-journals.ts) with the time of
 * their last checkpoint.
 */
import type { ShedJournal, ShedJournals } from './shed-journals.js';
import { errorMessage, type Logger, splitQueueKey } from '../core/index.js';

/** The journal argument that records when Tidemark declared it (ms since the epoch). */
export const CREATED_AT_ARGUMENT = 'x-tidemark-created-at';

export class JournalRenewals {
  /**
   * When the round of the latest checkpoint holding each queue started, by queueKey: its cut was
   * taken in the journal that existed then.
   */
  private readonly checkpointedAt = new Map<string, number>();
  /** When each journal was declared (x-tidemark-created-at), by queueKey; absent if unknown. */
  private readonly createdAt = new Map<string, number>();
  /** Queues whose journal was shed, by queueKey, until they are checkpointed from a new one. */
  private readonly shed = new Map<string, ShedJournal>();
  private loaded = false;

  constructor(
    private readonly log: Logger,
    private readonly shedLog?: ShedJournals,
  ) {}

  /**
   * A checkpoint holding `queues` (by queueKey), whose round started at `startedAtMs`, committed.
   * `carried`: queues it carries from an older cut (G8), by queueKey, with when the round of that
   * cut started, for those this leader does not know yet: their cut is still in that journal.
   */
  committed(queues: ReadonlySet<string>, startedAtMs: number, carried: ReadonlyMap<string, number> = new Map()): void {
    for (const id of [...this.checkpointedAt.keys()]) if (!queues.has(id) && !carried.has(id)) this.checkpointedAt.delete(id);
    for (const [id, at] of carried) if (!this.checkpointedAt.has(id)) this.checkpointedAt.set(id, at);
    for (const id of queues) {
      this.checkpointedAt.set(id, startedAtMs);
      // Shed, renewed, and checkpointed from its new journal since.
      if (this.shed.has(id) && (this.createdAt.get(id) ?? Infinity) <= startedAtMs) {
        this.shed.delete(id);
        this.shedLog?.remove(id).catch((err) => this.log.warn('forgetting a shed journal failed', { ...splitQueueKey(id), err: errorMessage(err) }));
      }
    }
  }

  /** Reads the shed journals an earlier leader recorded, once (retried on the next pass if it fails). */
  async load(): Promise<void> {
    if (this.loaded || !this.shedLog) return;
    try {
      for (const [id, record] of await this.shedLog.all()) if (!this.shed.has(id)) this.shed.set(id, record);
      this.loaded = true;
    } catch (err) {
      this.log.warn('reading the shed journals from Redis failed; will retry', { err: errorMessage(err) });
    }
  }

  /** A journal as the broker lists it: `created` is its x-tidemark-created-at argument, if any. */
  listed(id: string, created: unknown): void {
    if (typeof created === 'number') this.createdAt.set(id, created);
    else this.createdAt.delete(id);
  }

  /** This leader declared the queue's journal at `atMs`. */
  declared(id: string, atMs: number): void {
    this.createdAt.set(id, atMs);
  }

  /** Why a shed queue is waiting, if it was shed. */
  shedReason(id: string): string | undefined {
    return this.shed.get(id)?.reason;
  }

  /** The queue's journal was just deleted to relieve the disk; records it here and in Redis. */
  async shedNow(id: string, reason: string, shedAtMs: number): Promise<void> {
    const record: ShedJournal = { reason, shedAtMs, checkpointedAtMs: this.checkpointedAt.get(id) ?? 0 };
    this.createdAt.delete(id);
    this.shed.set(id, record);
    await this.shedLog?.add(id, record).catch((err) => this.log.warn('recording a shed journal failed', { ...splitQueueKey(id), err: errorMessage(err) }));
  }

  /** Of `queues` (queueKey → display name), those whose journal is renewed, with what happened. */
  renewed(queues: Iterable<[string, string]>): Map<string, string> {
    const renewed = new Map<string, string>();
    for (const [id, name] of queues) {
      const createdAt = this.createdAt.get(id);
      const shed = this.shed.get(id);
      // A shed queue left out of checkpoints since is renewed all the same.
      const checkpointedAt = this.checkpointedAt.get(id) ?? shed?.checkpointedAtMs;
      if (createdAt === undefined || checkpointedAt === undefined || createdAt <= checkpointedAt) continue;
      const cause = shed?.reason ?? 'its journal was deleted (outside Tidemark?)';
      renewed.set(
        id,
        `not protected between ${new Date(checkpointedAt).toISOString()} and ${new Date(createdAt).toISOString()}: ${cause}; ` +
          `messages that entered ${name} in between are in no checkpoint`,
      );
    }
    return renewed;
  }
}
