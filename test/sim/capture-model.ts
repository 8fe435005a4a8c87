/**
 * Model of one queue's capture (mirrors services/worker/queue-capture.ts): reads the journal in
 * offset order from where it resumed, notes every fence (a later fence with the same epoch
 * replaces an earlier one), writes buffered records to immutable segments, and moves the durable
 * offset only once a segment is in the store. COMMIT moves the base, ABORT forgets a fence; both
 * act only on a fence with the round id they carry.
 */
import type { QueueCheckpoint, QueueDefinition, SegmentRef } from '../../services/gen/tidemark/v1/store.js';
import { segmentKey } from '../../services/core/store/keys.js';
import type { SimQueue } from './broker.js';

export interface FencePosition {
  roundId: string;
  offset: number;
  /** Data messages in [startOffset, offset). */
  messages: number;
}

/** Where a capture starts: the cut of the latest visible checkpoint holding the queue, or 0. */
export interface CaptureStart {
  startOffset: number;
  resumeOffset: number;
  baseEpoch: number;
  baseMessages: number;
}

export class CaptureModel {
  startOffset: number;
  nextOffset: number;
  durableOffset: number;
  baseEpoch: number;
  messages: number;
  /** Segments written since the base checkpoint's cut, in offset order. */
  segments: SegmentRef[] = [];
  readonly fences = new Map<number, FencePosition>();
  flushing = false;
  failure: string | undefined;
  private expectedFence: { offset: number; epoch: number } | undefined;

  constructor(
    readonly queue: SimQueue,
    readonly definition: QueueDefinition,
    start: CaptureStart,
    /** Distinguishes a worker's lives: records captured again get new capture times, so new segment bytes. */
    private readonly life: string,
  ) {
    this.startOffset = start.startOffset;
    this.nextOffset = start.resumeOffset;
    this.durableOffset = start.resumeOffset;
    this.baseEpoch = start.baseEpoch;
    this.messages = start.baseMessages;
    this.expectedFence = start.baseEpoch > 0 ? { offset: start.resumeOffset, epoch: start.baseEpoch } : undefined;
  }

  /** Reads up to `max` records from the journal (the broker's deliveries). */
  read(journal: readonly { offset: number; kind: string; epoch?: number; roundId?: string }[], max: number): void {
    for (let n = 0; n < max && this.nextOffset < journal.length && !this.failure; n += 1) {
      const entry = journal[this.nextOffset];
      if (this.expectedFence && entry.offset === this.expectedFence.offset) {
        // Resuming from a cut, the record there must be that checkpoint's fence.
        if (entry.kind !== 'fence' || entry.epoch !== this.expectedFence.epoch) {
          this.failure = `journal ${this.queue.journal} does not hold checkpoint ${this.expectedFence.epoch}'s fence at offset ${entry.offset}`;
          return;
        }
        this.expectedFence = undefined;
      }
      if (entry.kind === 'fence') {
        this.fences.set(entry.epoch!, { roundId: entry.roundId!, offset: entry.offset, messages: this.messages });
      } else {
        this.messages += 1;
      }
      this.nextOffset += 1;
    }
  }

  /** The segment a flush would write now: every buffered record. */
  pendingSegment(): SegmentRef | undefined {
    if (this.nextOffset <= this.durableOffset) return undefined;
    const first = this.durableOffset;
    const last = this.nextOffset - 1;
    const q = this.queue;
    const key = segmentKey(q.vhost, q.name, first, last, contentHash(`${q.name}:${first}:${last}:${this.life}`));
    return { key, firstOffset: first, lastOffset: last, records: last - first + 1, messages: 0, storedBytes: 0, bodyBytes: 0, sha256: key, codec: 'sim' };
  }

  /** The segment is in the store: its records are durable. */
  flushed(segment: SegmentRef): void {
    this.segments.push(segment);
    this.durableOffset = Math.max(this.durableOffset, segment.lastOffset + 1);
  }

  /** This queue's part of checkpoint `epoch` (QueueCapture.prepare, once the fence is durable). */
  part(fence: FencePosition, workerId: string): QueueCheckpoint {
    return {
      definition: this.definition,
      journal: this.queue.journal,
      startOffset: this.startOffset,
      cutOffset: fence.offset,
      messages: fence.messages,
      bodyBytes: 0,
      segments: this.segments.filter((s) => s.firstOffset < fence.offset),
      baseEpoch: this.baseEpoch,
      workerId,
      incomplete: [],
    };
  }

  /** COMMIT: the cut becomes the base. Returns whether this capture adopted it. */
  commit(epoch: number, roundId: string): boolean {
    const fence = this.fences.get(epoch);
    if (!fence || fence.roundId !== roundId) return false;
    this.baseEpoch = epoch;
    this.segments = this.segments.filter((s) => s.lastOffset >= fence.offset);
    for (const e of [...this.fences.keys()]) if (e <= epoch) this.fences.delete(e);
    return true;
  }

  abort(epoch: number, roundId: string): void {
    if (this.fences.get(epoch)?.roundId === roundId) this.fences.delete(epoch);
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
