/**
 * What one queue's capture has made durable, and where each fence it read sits (pure: no I/O).
 * QueueCapture (queue-capture.ts) keeps one per queue, and the simulation's capture
 * (test/sim/capture-model.ts) keeps the same, so what a vote promises is decided by this code
 * in both.
 *
 * - durableOffset only moves forward, and only once a segment holding the records below it is in
 *   the store: a YES vote never promises a record that is not durable.
 * - A fence is noted with the message count and body bytes before it; a later fence with the same
 *   epoch (a reused number) replaces the earlier one.
 * - COMMIT of a fence moves the base to its cut and forgets the segments wholly before it (the
 *   committed manifest chain holds them) and every fence up to it; ABORT forgets its fence only.
 *   Both act only on a fence with the round id they carry.
 */
import type { QueueCheckpoint, QueueDefinition, SegmentRef } from '../gen/tidemark/v1/store.js';

export interface FencePosition {
  /** The round id the fence carried. */
  roundId: string;
  offset: number;
  /** Data messages in [startOffset, offset). */
  messages: number;
  /** Body bytes of those messages. */
  bodyBytes: number;
}

export class CaptureLedger {
  /** Records below this offset are in segments in the store. */
  durableOffset: number;
  baseEpoch: number;
  /** Data messages read since the capture's start (the base checkpoint's, then every one read). */
  messages: number;
  bodyBytes: number;
  /** Segments written since the base checkpoint's cut, in offset order. */
  private segments: SegmentRef[] = [];
  private readonly fences = new Map<number, FencePosition>();

  constructor(from: { resumeOffset: number; baseEpoch: number; baseMessages: number; baseBodyBytes: number }) {
    this.durableOffset = from.resumeOffset;
    this.baseEpoch = from.baseEpoch;
    this.messages = from.baseMessages;
    this.bodyBytes = from.baseBodyBytes;
  }

  /** A queue with no checkpoint yet starts wherever its journal starts: nothing below is owed. */
  startedAt(offset: number): void {
    this.durableOffset = offset;
  }

  /** A data message was read. */
  messageRead(bodyBytes: number): void {
    this.messages += 1;
    this.bodyBytes += bodyBytes;
  }

  /** Fence `epoch` of round `roundId` was read at `offset`. */
  fenceRead(epoch: number, roundId: string, offset: number): void {
    this.fences.set(epoch, { roundId, offset, messages: this.messages, bodyBytes: this.bodyBytes });
  }

  /** The fence of `epoch` read for round `roundId`, if it has been (and not forgotten). */
  fence(epoch: number, roundId: string): FencePosition | undefined {
    const fence = this.fences.get(epoch);
    return fence && fence.roundId === roundId ? fence : undefined;
  }

  /**
   * Every record below `fence` is in the store, so the cut can be promised. The fence itself need
   * not be: the checkpoint holds [start, cut), and a resume reads the fence from the journal.
   */
  durableThrough(fence: FencePosition): boolean {
    return this.durableOffset >= fence.offset;
  }

  /** `ref`, covering offsets up to its lastOffset, is in the store. */
  written(ref: SegmentRef): void {
    this.segments.push(ref);
    this.durableOffset = Math.max(this.durableOffset, ref.lastOffset + 1);
  }

  /**
   * This queue's part of the checkpoint cut at `fence`. The caller first makes every record below
   * the cut durable (QueueCapture.prepare flushes until durableOffset reaches it).
   */
  part(fence: FencePosition, queue: { definition: QueueDefinition; journal: string; startOffset: number }, workerId = ''): QueueCheckpoint {
    return {
      definition: queue.definition,
      journal: queue.journal,
      startOffset: queue.startOffset,
      cutOffset: fence.offset,
      messages: fence.messages,
      bodyBytes: fence.bodyBytes,
      segments: this.segments.filter((s) => s.firstOffset < fence.offset),
      baseEpoch: this.baseEpoch,
      workerId,
      incomplete: [],
      headOffset: queue.startOffset,
      headMessages: 0,
      possiblyAcked: 0,
      headBasis: '',
      predating: 0,
      outsideCut: undefined,
      historyOffset: 0,
      historyMessages: 0,
    };
  }

  /** COMMIT of `epoch`: its cut becomes the base. Returns whether this capture held its fence. */
  commit(epoch: number, roundId: string): boolean {
    const fence = this.fence(epoch, roundId);
    if (!fence) return false;
    this.baseEpoch = epoch;
    this.segments = this.segments.filter((s) => s.lastOffset >= fence.offset);
    for (const e of [...this.fences.keys()]) if (e <= epoch) this.fences.delete(e);
    return true;
  }

  /** ABORT of `epoch`: its fence is forgotten; the records stay for the next round. */
  abort(epoch: number, roundId: string): void {
    if (this.fence(epoch, roundId)) this.fences.delete(epoch);
  }
}
