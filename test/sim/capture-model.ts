/**
 * One queue's capture in the simulation: the shipped JournalCursor checks every delivery (offset
 * order, re-deliveries, the fence expected at a resumed cut) and the shipped CaptureLedger keeps
 * what is durable, where each fence sits, and what COMMIT and ABORT do
 * (services/worker/journal-cursor.ts, capture-ledger.ts, both driven the same way by
 * queue-capture.ts). What is left here is I/O: the broker's deliveries from the simulated
 * journal, and the segment a flush would write, whose key stands in for its content.
 */
import type { QueueCheckpoint, QueueDefinition, SegmentRef } from '../../services/gen/tidemark/v1/store.js';
import { segmentKey } from '../../services/core/store/keys.js';
import { errorMessage } from '../../services/core/index.js';
import { CaptureLedger, type FencePosition } from '../../services/worker/capture-ledger.js';
import { JournalCursor } from '../../services/worker/journal-cursor.js';
import type { SimQueue } from './broker.js';

export type { FencePosition };

/** Where a capture starts: the cut of the latest visible checkpoint holding the queue, or 0. */
export interface CaptureStart {
  startOffset: number;
  resumeOffset: number;
  baseEpoch: number;
  baseMessages: number;
}

export class CaptureModel {
  readonly cursor: JournalCursor;
  readonly ledger: CaptureLedger;
  flushing = false;
  failure: string | undefined;

  constructor(
    readonly queue: SimQueue,
    readonly definition: QueueDefinition,
    start: CaptureStart,
    /** Distinguishes a worker's lives: records captured again get new capture times, so new segment bytes. */
    private readonly life: string,
  ) {
    this.cursor = new JournalCursor(start, { journal: queue.journal, queue: queue.name });
    this.cursor.attached();
    this.ledger = new CaptureLedger({ ...start, baseBodyBytes: 0 });
  }

  /** Reads up to `max` records from the journal (the broker's deliveries, QueueCapture.accept). */
  read(journal: readonly { offset: number; kind: string; epoch?: number; roundId?: string }[], max: number): void {
    for (let n = 0; n < max && this.cursor.nextOffset < journal.length && !this.failure; n += 1) {
      const entry = journal[this.cursor.nextOffset];
      const fenceEpoch = entry.kind === 'fence' ? entry.epoch! : 0;
      try {
        const admission = this.cursor.admit(entry.offset, fenceEpoch);
        if (admission.startedAt !== undefined) this.ledger.startedAt(admission.startedAt);
        if (!admission.accept) continue;
      } catch (err) {
        this.failure = errorMessage(err);
        return;
      }
      if (fenceEpoch > 0) this.ledger.fenceRead(fenceEpoch, entry.roundId!, entry.offset);
      else this.ledger.messageRead(0);
      this.cursor.accepted(entry.offset);
    }
  }

  /** The segment a flush would write now: every record read and not yet durable (one flush at a time). */
  pendingSegment(): SegmentRef | undefined {
    const first = this.ledger.durableOffset;
    if (this.cursor.nextOffset <= first) return undefined;
    const last = this.cursor.nextOffset - 1;
    const q = this.queue;
    const key = segmentKey(q.vhost, q.name, first, last, contentHash(`${q.name}:${first}:${last}:${this.life}`));
    return { key, firstOffset: first, lastOffset: last, records: last - first + 1, messages: 0, storedBytes: 0, bodyBytes: 0, sha256: key, codec: 'sim' };
  }

  /** The segment is in the store: its records are durable. */
  flushed(segment: SegmentRef): void {
    this.ledger.written(segment);
  }

  /** The fence of `epoch` for round `roundId`, once read. */
  fence(epoch: number, roundId: string): FencePosition | undefined {
    return this.ledger.fence(epoch, roundId);
  }

  /** This queue's part of checkpoint `epoch` (QueueCapture.prepare, once the cut is durable). */
  part(fence: FencePosition, workerId: string): QueueCheckpoint {
    return this.ledger.part(fence, { definition: this.definition, journal: this.queue.journal, startOffset: this.cursor.startOffset }, workerId);
  }

  /** COMMIT: the cut becomes the base. Returns whether this capture adopted it. */
  commit(epoch: number, roundId: string): boolean {
    return this.ledger.commit(epoch, roundId);
  }

  abort(epoch: number, roundId: string): void {
    this.ledger.abort(epoch, roundId);
  }
}

/** 16 hex digits from a string (FNV-1a twice), standing in for a segment's sha256. */
function contentHash(text: string): string {
  let a = 0x811c9dc5;
  let b = 0x01000193;
  for (let i = 0; i < text.length; i += 1) {
    a = Math.imul(a ^ text.charCodeAt(i), 0x01000193) >>> 0;
    b = Math.imul(b ^ text.charCodeAt(i), 0x811c9dc5) >>> 0;
  }
  return a.toString(16).padStart(8, '0') + b.toString(16).padStart(8, '0');
}
