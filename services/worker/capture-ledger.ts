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
 * - Each round's marker (published just before its fence) is noted like a fence; a part computes
 *   the queue's head at the cut from it (queue-head.ts), and COMMIT makes that head the floor of
 *   later ones.
 */
import type { QueueCheckpoint, QueueDefinition, SegmentRef } from '../gen/tidemark/v1/store.js';
import type { QueueCensus } from '../gen/tidemark/v1/worker.js';
import { DataIndex, type Head, HeadTracker } from './queue-head.js';

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
  private readonly markers = new Map<number, FencePosition>();
  /** The head computed for a round's part, adopted if that round commits. */
  private readonly heads = new Map<number, { roundId: string; head: Head }>();
  /** Data index → offset for what this capture read, and the head across rounds. */
  private readonly index = new DataIndex();
  private readonly head: HeadTracker;

  constructor(from: {
    resumeOffset: number;
    baseEpoch: number;
    baseMessages: number;
    baseBodyBytes: number;
    startOffset?: number;
    baseHeadOffset?: number;
    baseHeadMessages?: number;
    basePredating?: number;
    baseHeadKnown?: boolean;
  }) {
    this.durableOffset = from.resumeOffset;
    this.baseEpoch = from.baseEpoch;
    this.messages = from.baseMessages;
    this.bodyBytes = from.baseBodyBytes;
    this.index.restart(from.resumeOffset, from.baseMessages);
    this.head = new HeadTracker(
      { offset: from.baseHeadOffset ?? 0, messages: from.baseHeadMessages ?? 0, predating: from.basePredating ?? 0, known: from.baseHeadKnown ?? false },
      from.startOffset ?? 0,
    );
  }

  /** A queue with no checkpoint yet starts wherever its journal starts: nothing below is owed. */
  startedAt(offset: number): void {
    this.durableOffset = offset;
    this.index.restart(offset, this.messages);
    this.head.startedAt(offset);
  }

  /** Offsets `from..to` hold nothing the broker delivers (a stream segment's first entry). */
  gap(to: number): void {
    this.index.run(to + 1, this.messages);
  }

  /** A data message was read. */
  messageRead(bodyBytes: number): void {
    this.messages += 1;
    this.bodyBytes += bodyBytes;
  }

  /** Fence `epoch` of round `roundId` was read at `offset`. */
  fenceRead(epoch: number, roundId: string, offset: number): void {
    this.fences.set(epoch, { roundId, offset, messages: this.messages, bodyBytes: this.bodyBytes });
    this.index.run(offset + 1, this.messages);
  }

  /** The marker of round `roundId` (epoch `epoch`) was read at `offset`. */
  markerRead(epoch: number, roundId: string, offset: number): void {
    this.markers.set(epoch, { roundId, offset, messages: this.messages, bodyBytes: this.bodyBytes });
    this.index.run(offset + 1, this.messages);
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
  part(
    fence: FencePosition,
    queue: { definition: QueueDefinition; journal: string; startOffset: number },
    workerId = '',
    round?: { epoch: number; census: QueueCensus | undefined },
  ): QueueCheckpoint {
    const marker = round ? this.markers.get(round.epoch) : undefined;
    const head = round
      ? this.head.headAt(round.census, { markerMessages: marker?.roundId === fence.roundId ? marker.messages : undefined, fenceMessages: fence.messages, fenceOffset: fence.offset }, this.index)
      : this.head.base;
    if (round) this.heads.set(round.epoch, { roundId: fence.roundId, head });
    const start = queue.startOffset;
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
      headOffset: Math.max(head.offset, start),
      headMessages: head.offset > start ? head.messages : 0,
      possiblyAcked: head.possiblyAcked,
      headBasis: head.basis,
      predating: head.predating,
      headKnown: head.known,
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
    const head = this.heads.get(epoch);
    if (head && head.roundId === roundId) this.head.commit(head.head, this.index);
    for (const map of [this.fences, this.markers, this.heads]) for (const e of [...map.keys()]) if (e <= epoch) map.delete(e);
    return true;
  }

  /** ABORT of `epoch`: its fence is forgotten; the records stay for the next round. */
  abort(epoch: number, roundId: string): void {
    if (this.fence(epoch, roundId)) {
      this.fences.delete(epoch);
      this.markers.delete(epoch);
      this.heads.delete(epoch);
    }
  }
}
