/**
 * Checks on restored data that tests share: restore a checkpoint through the admin API, then
 * compare each restored queue with its journal's prefix before the checkpoint's fence.
 */
import { expect } from 'vitest';
import type { TidemarkClient } from '../../services/client/index.js';
import type { CheckpointManifest } from '../../services/gen/tidemark/v1/store.js';
import { readQueue, readStream, withoutOrigin, type ReadMessage } from './broker.js';

/** Restores a checkpoint under a name prefix and expects every queue to succeed. */
export async function restoreWithPrefix(client: TidemarkClient, manifest: CheckpointManifest, prefix: string): Promise<void> {
  let done = false;
  for await (const event of client.restore({ checkpoint: String(manifest.epoch), prefix })) {
    if (event.event?.$case === 'progress') expect(event.event.value.error).toBe('');
    if (event.event?.$case === 'done') {
      expect(event.event.value.failedQueues).toBe(0);
      expect(event.event.value.messages).toBe(manifest.messages);
      done = true;
    }
  }
  expect(done).toBe(true);
}

export class RestoredQueues {
  /** Reading a classic or quorum queue consumes it, so each restored queue is read once. */
  private readonly reads = new Map<string, Promise<ReadMessage[]>>();

  constructor(
    private readonly amqpUrl: string,
    private readonly vhost: string,
  ) {}

  read(manifest: CheckpointManifest, prefix: string, name: string): Promise<ReadMessage[]> {
    const key = `${prefix}${name}`;
    let read = this.reads.get(key);
    if (!read) {
      const entry = manifest.queues.find((q) => q.definition?.name === name);
      if (!entry) throw new Error(`checkpoint ${manifest.epoch} has no queue ${name}`);
      read = readQueue(this.amqpUrl, this.vhost, key, entry.definition!.type, entry.messages);
      this.reads.set(key, read);
    }
    return read;
  }

  /**
   * G2 + G3: each restored queue is exactly its journal's data records before this checkpoint's
   * fence — same count, order, bodies, properties and headers — and every cut is this epoch's fence.
   */
  async expectExactPrefixes(manifest: CheckpointManifest, prefix: string): Promise<void> {
    for (const entry of manifest.queues) {
      const name = entry.definition!.name;
      const journal = await readStream(this.amqpUrl, this.vhost, entry.journal, entry.startOffset, entry.cutOffset + 1);
      const fence = journal[journal.length - 1];
      expect(fence.offset, `${name}: record at the cut`).toBe(entry.cutOffset);
      // A queue carried from an older cut (G8, outside this checkpoint's cut) ends at that cut's fence.
      expect(Number(fence.headers['x-tidemark-fence']), `${name}: fence epoch at the cut`).toBe(entry.outsideCut?.sinceEpoch ?? manifest.epoch);
      const expected = journal.slice(0, -1).filter((m) => m.headers['x-tidemark-fence'] === undefined);
      const restored = await this.read(manifest, prefix, name);
      expect(restored.length, `${name}: restored count`).toBe(expected.length);
      expect(entry.messages, `${name}: manifest count`).toBe(expected.length);
      restored.forEach((got, i) => {
        const want = expected[i];
        expect(got.body.equals(want.body), `${name}[${i}] body`).toBe(true);
        expect(Number(got.headers['x-tidemark-origin-offset']), `${name}[${i}] origin offset`).toBe(want.offset);
        expect(withoutOrigin(got.headers), `${name}[${i}] headers`).toEqual(want.headers);
        for (const p of ['messageId', 'contentType', 'correlationId', 'deliveryMode', 'priority', 'timestamp', 'appId'] as const) {
          expect(got.properties[p], `${name}[${i}] ${p}`).toEqual(want.properties[p]);
        }
      });
    }
  }

  /**
   * Issue 4's resume guarantee, after a restore was cut short and resumed: a stream target holds
   * exactly the prefix (it resumes from its own tail), and a queue target holds the prefix plus
   * at most `window` duplicates per resume, each an exact copy carrying its origin headers, re-sent
   * right where the restore stopped (the origin offsets step back at most `resumes` times).
   * Returns the number of duplicates per queue.
   */
  async expectResumedPrefixes(manifest: CheckpointManifest, prefix: string, window: number, resumes = 1): Promise<Map<string, number>> {
    const duplicates = new Map<string, number>();
    for (const entry of manifest.queues) {
      const name = entry.definition!.name;
      const journal = await readStream(this.amqpUrl, this.vhost, entry.journal, entry.startOffset, entry.cutOffset);
      const expected = journal.filter((m) => m.headers['x-tidemark-fence'] === undefined);
      const restored = await this.read(manifest, prefix, name);
      const offsets = restored.map((m) => Number(m.headers['x-tidemark-origin-offset']));
      expect(offsets.every((o) => Number.isSafeInteger(o)), `${name}: every message carries its origin offset`).toBe(true);
      const byOffset = new Map(expected.map((m) => [m.offset!, m]));
      let stepsBack = 0;
      let highest = -1;
      const seen = new Set<number>();
      restored.forEach((got, i) => {
        const want = byOffset.get(offsets[i]);
        expect(want, `${name}[${i}]: origin offset ${offsets[i]} is in the checkpoint`).toBeDefined();
        expect(got.body.equals(want!.body), `${name}[${i}] body`).toBe(true);
        expect(withoutOrigin(got.headers), `${name}[${i}] headers`).toEqual(want!.headers);
        if (offsets[i] <= highest) {
          // A re-sent message: only where a resume began, and only within the window.
          if (i === 0 || offsets[i] <= offsets[i - 1]) stepsBack += 1;
          expect(seen.has(offsets[i]), `${name}[${i}]: a duplicate repeats a message already restored`).toBe(true);
        }
        highest = Math.max(highest, offsets[i]);
        seen.add(offsets[i]);
      });
      const dups = restored.length - seen.size;
      expect([...seen].sort((a, b) => a - b), `${name}: every message of the prefix, once at least`).toEqual(expected.map((m) => m.offset));
      if (entry.definition!.type === 'stream') expect(dups, `${name}: a stream target resumes from its tail, without duplicates`).toBe(0);
      expect(stepsBack, `${name}: re-sent runs`).toBeLessThanOrEqual(resumes);
      expect(dups, `${name}: duplicates within the window`).toBeLessThanOrEqual(window * resumes);
      duplicates.set(name, dups);
    }
    return duplicates;
  }

  /** Causality: a restored B_i implies its A_i (A_i was confirmed before B_i was published). */
  async expectCausal(manifest: CheckpointManifest, prefix: string, queueA: string, queueB: string): Promise<void> {
    const a = new Set((await this.read(manifest, prefix, queueA)).map((m) => Number(m.headers.causal)));
    const b = (await this.read(manifest, prefix, queueB)).map((m) => Number(m.headers.causal));
    const orphans = b.filter((i) => !a.has(i));
    expect(orphans, `B messages without their A in checkpoint ${manifest.epoch}`).toEqual([]);
  }
}
