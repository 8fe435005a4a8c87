/**
 * The journals the leader shed under disk pressure (journal-retention.ts), kept in Redis so that
 * any later leader knows a queue protected again from a new journal was not protected for a while,
 * even once checkpoints without it have committed, and marks its next checkpoint.
 */
import type { Redis } from 'ioredis';
import { redisKeys } from '../core/index.js';

export interface ShedJournal {
  /** What happened, for people. */
  reason: string;
  /** When the journal was deleted (ms). */
  shedAtMs: number;
  /** When the round of the latest checkpoint holding the queue started (ms); 0 if none did. */
  checkpointedAtMs: number;
}

export class ShedJournals {
  private readonly key: string;

  constructor(
    private readonly redis: Redis,
    namespace: string,
  ) {
    this.key = redisKeys(namespace).shedJournals;
  }

  /** Every record, by queue key; a record that does not parse is left out. */
  async all(): Promise<Map<string, ShedJournal>> {
    const rows = await this.redis.hgetall(this.key);
    const records = new Map<string, ShedJournal>();
    for (const [id, json] of Object.entries(rows)) {
      try {
        const r = JSON.parse(json) as Partial<ShedJournal>;
        if (typeof r.reason === 'string' && typeof r.shedAtMs === 'number' && typeof r.checkpointedAtMs === 'number') {
          records.set(id, { reason: r.reason, shedAtMs: r.shedAtMs, checkpointedAtMs: r.checkpointedAtMs });
        }
      } catch {
        // Not ours to interpret: the queue is then treated as never shed.
      }
    }
    return records;
  }

  async add(id: string, record: ShedJournal): Promise<void> {
    await this.redis.hset(this.key, id, JSON.stringify(record));
  }

  async remove(id: string): Promise<void> {
    await this.redis.hdel(this.key, id);
  }
}
