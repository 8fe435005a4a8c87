/**
 * Where a capture stands in its journal, and the checks every delivery passes (pure: no I/O).
 *
 * - A queue with no checkpoint yet starts wherever its journal starts (the first delivery).
 * - A re-delivered offset (below the next one expected) is skipped.
 * - Within one read the broker skips only the few offsets that hold no message (the tracking
 *   snapshot at the start of a stream segment file): a reader keeps the files it reads open, so
 *   retention cannot take records from under it. At the start of a read a hole can be retention's,
 *   and is an error (the queue votes NO; the capture is restarted from the last cut).
 * - Resuming from a checkpoint's cut, the record at that offset must be that checkpoint's fence:
 *   anything else means the journal was deleted or replaced, and its offsets mean nothing now.
 */
import { MAX_UNDELIVERED_OFFSETS } from '../core/index.js';
import { JournalGapError } from './errors.js';

/** What to do with one delivery. */
export interface Admission {
  /** False for a re-delivery of an offset already held. */
  accept: boolean;
  /** Set when this delivery fixed where the capture's history starts. */
  startedAt?: number;
  /** Offsets skipped as holding no message, [from, to] inclusive, for the log. */
  emptyOffsets?: [number, number];
}

export class JournalCursor {
  /** First offset this capture's history starts at (0 or the first offset the journal still had). */
  startOffset: number;
  /** Next journal offset expected from the broker. */
  nextOffset: number;
  /** True until the first delivery of a queue that has no checkpoint yet fixes startOffset. */
  private startOpen: boolean;
  private expectedFence: { offset: number; epoch: number } | undefined;
  /** Deliveries since the last attach: a hole after the first is the broker's, not retention's. */
  private deliveriesSinceAttach = 0;

  constructor(
    from: { startOffset: number; resumeOffset: number; baseEpoch: number },
    private readonly names: { journal: string; queue: string },
  ) {
    this.startOffset = from.startOffset;
    this.nextOffset = from.resumeOffset;
    this.startOpen = from.baseEpoch === 0 && from.resumeOffset === 0;
    this.expectedFence = from.baseEpoch > 0 ? { offset: from.resumeOffset, epoch: from.baseEpoch } : undefined;
  }

  /** A new read begins (attach or re-attach), at {@link nextOffset}. */
  attached(): void {
    this.deliveriesSinceAttach = 0;
  }

  /**
   * Checks a delivery at `offset` carrying fence `fenceEpoch` (0: not a fence). Throws
   * {@link JournalGapError} for a hole or a wrong fence; an accepted delivery must be followed
   * by {@link accepted} once it is held.
   */
  admit(offset: number, fenceEpoch: number): Admission {
    const admission: Admission = { accept: true };
    if (this.startOpen) {
      this.startOpen = false;
      this.startOffset = offset;
      this.nextOffset = offset;
      admission.startedAt = offset;
    }
    const midRead = this.deliveriesSinceAttach > 0;
    this.deliveriesSinceAttach += 1;
    if (offset < this.nextOffset) return { accept: false };
    if (offset > this.nextOffset && midRead && offset - this.nextOffset <= MAX_UNDELIVERED_OFFSETS) {
      admission.emptyOffsets = [this.nextOffset, offset - 1];
      this.nextOffset = offset;
    }
    const { journal, queue } = this.names;
    if (offset > this.nextOffset) {
      throw new JournalGapError(
        `journal ${journal} skipped offsets ${this.nextOffset}..${offset - 1} (retention truncated it?); ` +
          `checkpoints of ${queue} cannot be exact until it is re-protected`,
      );
    }
    if (this.expectedFence && offset === this.expectedFence.offset) {
      if (fenceEpoch !== this.expectedFence.epoch) {
        throw new JournalGapError(
          `journal ${journal} does not hold checkpoint ${this.expectedFence.epoch}'s fence at offset ${offset}: ` +
            'it was replaced, so its offsets no longer match the checkpoints; rounds will abort until it is re-protected',
        );
      }
      this.expectedFence = undefined;
    }
    return admission;
  }

  /** The delivery at `offset` is held (buffered). */
  accepted(offset: number): void {
    this.nextOffset = offset + 1;
  }
}
