/**
 * Capture of one protected queue: reads its journal stream from the last durable offset, buffers
 * records, writes them to immutable segments, and tracks where each fence sits.
 *
 * Invariants:
 * - Records enter the buffer in journal-offset order with no duplicate and no gap but the few
 *   offsets the broker never delivers (journal-cursor.ts checks every delivery); every segment is
 *   a contiguous offset range (the buffer is cut at those holes).
 * - durableOffset only moves forward, and only after the segment holding the records below it is
 *   in the store: a YES vote never promises a record that is not durable.
 * - Capture never waits for a round; a round only asks how far the durable prefix reaches.
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import type { QueueAssignment, QueueCensus } from '../gen/tidemark/v1/worker.js';
import type { QueueCheckpoint, QueueDefinition, Record as JournalRecord } from '../gen/tidemark/v1/store.js';
import {
  type AdaptiveCodec,
  createAdaptiveCodec,
  encodeSegment,
  errorMessage,
  FENCE_EPOCH_HEADER,
  FENCE_NAMESPACE_HEADER,
  FENCE_ROUND_HEADER,
  fenceRangeRefOf,
  MARKER_HEADER,
  type Logger,
  type SegmentCodec,
  segmentRefOf,
  STREAM_OFFSET_HEADER,
  toProperties,
  unwrapRelayed,
} from '../core/index.js';
import { fenceRangeKey, type ObjectStore, segmentKey } from '../core/store/index.js';
import { CaptureLag, type Lag } from './capture-lag.js';
import { CaptureLedger, type FencePosition } from './capture-ledger.js';
import { JournalCursor } from './journal-cursor.js';
import { FenceNotSeenError, InvalidAssignmentError, JournalGapError, PrepareTimeoutError } from './errors.js';

export interface QueueCaptureOptions {
  namespace: string;
  assignment: QueueAssignment;
  store: ObjectStore;
  log: Logger;
  /** Close a segment once its buffered records reach this many body + header bytes. */
  segmentBytes: number;
  /** Unacknowledged journal deliveries the broker may have in flight to this consumer. */
  prefetch: number;
  /** How segments are compressed. @default a new adaptive codec (gzip when it pays and keeps up, else identity) */
  codec?: SegmentCodec | AdaptiveCodec;
  /** Hears every segment upload (metrics). @default nobody */
  uploads?: SegmentUploadObserver;
}

/** What a capture tells about its segment uploads (worker-metrics.ts counts them). */
export interface SegmentUploadObserver {
  uploaded(storedBytes: number, seconds: number): void;
  failed(err: unknown, seconds: number): void;
}

export class QueueCapture {
  readonly vhost: string;
  readonly queue: string;
  readonly journal: string;
  definition: QueueDefinition;

  private readonly codec: SegmentCodec | AdaptiveCodec;
  private channel: Channel | undefined;
  private consumerTag: string | undefined;

  /** Where the capture stands in its journal, and the offset and fence checks (journal-cursor.ts). */
  private readonly cursor: JournalCursor;
  /** What is durable, and where each fence sits (capture-ledger.ts). */
  private readonly ledger: CaptureLedger;
  /** How far the capture is behind its journal's tail (capture-lag.ts). */
  private readonly lag = new CaptureLag();

  private buffer: JournalRecord[] = [];
  private bufferBytes = 0;
  private unacked: ConsumeMessage | undefined;
  private unackedCount = 0;
  /** A flush asked for because the buffer reached segmentBytes has not started yet. */
  private sizeFlushQueued = false;
  private fenceWaiters: Array<() => void> = [];
  private flushing: Promise<void> = Promise.resolve();
  /** Segments handed to the store and not yet written; acks wait while it is high (backpressure). */
  private backlog = 0;
  private failure: Error | undefined;

  constructor(private readonly options: QueueCaptureOptions) {
    const a = options.assignment;
    if (!a.definition) throw new InvalidAssignmentError('queue assignment without a definition');
    this.definition = a.definition;
    this.vhost = a.definition.vhost;
    this.queue = a.definition.name;
    this.journal = a.journal;
    this.codec = options.codec ?? createAdaptiveCodec();
    this.cursor = new JournalCursor(a, { journal: a.journal, queue: `${this.vhost}/${this.queue}` });
    this.ledger = new CaptureLedger(a);
  }

  /** Starts (or, after a lost channel, restarts) reading the journal at the next expected offset. */
  async attach(channel: Channel): Promise<void> {
    this.channel = channel;
    this.unacked = undefined;
    this.unackedCount = 0;
    this.cursor.attached();
    await channel.prefetch(this.options.prefetch, false);
    const reply = await channel.consume(this.journal, (msg) => this.onDelivery(msg), {
      noAck: false,
      arguments: { 'x-stream-offset': this.cursor.nextOffset },
    });
    this.consumerTag = reply.consumerTag;
  }

  /** Stops reading; buffered records not yet in segments are dropped (they are re-read on resume). */
  async detach(): Promise<void> {
    const channel = this.channel;
    this.channel = undefined;
    if (channel && this.consumerTag) {
      await channel.cancel(this.consumerTag).catch(() => {});
    }
    this.consumerTag = undefined;
    await this.flushing.catch(() => {});
  }

  get error(): Error | undefined {
    return this.failure;
  }

  status() {
    return {
      vhost: this.vhost,
      queue: this.queue,
      journal: this.journal,
      nextOffset: this.cursor.nextOffset,
      durableOffset: this.ledger.durableOffset,
      buffered: this.buffer.length,
      error: this.failure?.message ?? '',
      messages: this.ledger.messages,
      ...this.lagNow(),
    };
  }

  /** Body and header bytes of the records read and not yet in a segment (64 bytes counted per record). */
  get bufferedBytes(): number {
    return this.bufferBytes;
  }

  /** Records below this journal offset are durable in the store. */
  get durableOffset(): number {
    return this.ledger.durableOffset;
  }

  /** Reading its journal: attached, and not stopped by an error. */
  get reading(): boolean {
    return this.channel !== undefined && !this.failure;
  }

  /** The lag probe saw the journal's tail at or above `tail` at `atMs` (journal-tail.ts). */
  tailProbed(tail: number, atMs: number): void {
    this.lag.tailSeen(tail, atMs);
  }

  /**
   * How far behind the journal's tail capture is, at `nowMs`. Caught up to the first offset not
   * durable, past the fences and markers buffered there: a cut needs those covered, not stored, so
   * an idle queue's last fence, which waits for the next message to be written, is no lag.
   */
  lagNow(nowMs = Date.now()): { lagMessages: number; lagSeconds: number } {
    let caughtUp = this.buffer.length === 0 ? Math.max(this.ledger.durableOffset, this.cursor.nextOffset) : this.ledger.durableOffset;
    for (const record of this.buffer) {
      if (record.fenceEpoch === 0) break;
      caughtUp = Math.max(caughtUp, record.offset + 1);
    }
    const lag: Lag = this.lag.at(caughtUp, nowMs);
    return { lagMessages: lag.messages, lagSeconds: lag.seconds };
  }

  private onDelivery(msg: ConsumeMessage | null): void {
    if (msg === null) {
      // The broker cancelled the consumer (journal deleted): nothing more can be captured.
      this.fail(new JournalGapError(`journal ${this.journal} of ${this.vhost}/${this.queue} was cancelled by the broker (deleted?)`));
      return;
    }
    if (this.failure) return;
    try {
      this.accept(msg);
    } catch (err) {
      this.fail(err as Error);
    }
  }

  private accept(msg: ConsumeMessage): void {
    const headers = msg.properties.headers ?? {};
    const offset = Number(headers[STREAM_OFFSET_HEADER]);
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new JournalGapError(`journal ${this.journal} delivered a message without a valid ${STREAM_OFFSET_HEADER} header`);
    }
    this.ack(msg);
    const { epoch: fenceEpoch, roundId, marker } = this.fenceOf(headers);
    const admission = this.cursor.admit(offset, fenceEpoch);
    // A queue with no checkpoint yet starts wherever its journal starts.
    if (admission.startedAt !== undefined) this.ledger.startedAt(admission.startedAt);
    if (!admission.accept) return; // re-delivery of a chunk we already hold
    if (admission.emptyOffsets) {
      const [from, to] = admission.emptyOffsets;
      this.options.log.debug('journal offsets hold no message (stream segment start)', { vhost: this.vhost, queue: this.queue, journal: this.journal, from, to });
      this.ledger.gap(to);
    }
    // A copy relayed from the firehose (docs/OPERATIONS.md) is stored as the producer published it.
    const published = unwrapRelayed(msg.fields, msg.properties);
    const record: JournalRecord = {
      offset,
      exchange: published.exchange,
      routingKey: published.routingKey,
      properties: toProperties(published.properties, { dropHeaders: [STREAM_OFFSET_HEADER] }),
      body: msg.content,
      captureTimeMs: Date.now(),
      fenceEpoch,
    };
    if (marker !== undefined) {
      this.ledger.markerRead(fenceEpoch, marker, offset);
    } else if (fenceEpoch > 0) {
      this.ledger.fenceRead(fenceEpoch, roundId, offset);
      const waiters = this.fenceWaiters;
      this.fenceWaiters = [];
      for (const wake of waiters) wake();
    } else {
      this.ledger.messageRead(msg.content.length);
    }
    this.buffer.push(record);
    this.bufferBytes += msg.content.length + 64;
    this.cursor.accepted(offset);
    this.lag.tailSeen(offset + 1, record.captureTimeMs);
    // One flush at a time is asked for by size: it takes the whole buffer when it starts, so a
    // second one queued behind it would only write the few records that came in meanwhile.
    if (this.bufferBytes >= this.options.segmentBytes && !this.sizeFlushQueued) {
      this.sizeFlushQueued = true;
      this.flush().catch(() => {}); // kept in the buffer; tick and prepare retry and report it
    }
  }

  /** A fence or marker of this namespace: its epoch and round id (`marker`: the round a marker is for). */
  private fenceOf(headers: Record<string, unknown>): { epoch: number; roundId: string; marker?: string } {
    const epoch = headers[FENCE_EPOCH_HEADER];
    if (epoch === undefined || headers[FENCE_NAMESPACE_HEADER] !== this.options.namespace) return { epoch: 0, roundId: '' };
    const value = Number(epoch);
    const valid = Number.isSafeInteger(value) && value > 0 ? value : 0;
    const marker = headers[MARKER_HEADER];
    return { epoch: valid, roundId: String(headers[FENCE_ROUND_HEADER] ?? ''), ...(valid > 0 && marker !== undefined ? { marker: String(marker) } : {}) };
  }

  /** Acknowledges in batches: for a stream, acks only grant the broker credit to send more. */
  private ack(msg: ConsumeMessage): void {
    this.unacked = msg;
    this.unackedCount += 1;
    // While the store lags, withhold credit: the broker stops at prefetch and memory stays bounded.
    if (this.backlog > 2 || this.bufferBytes >= 2 * this.options.segmentBytes) return;
    if (this.unackedCount >= Math.max(1, Math.floor(this.options.prefetch / 4))) this.ackPending();
  }

  private ackPending(): void {
    if (this.unacked && this.channel) {
      try {
        this.channel.ack(this.unacked, true);
      } catch {
        // The channel is gone; the reconnect path re-reads from nextOffset.
      }
    }
    this.unacked = undefined;
    this.unackedCount = 0;
  }

  /** Stops this capture for good; rounds that include the queue get a NO vote with this reason. */
  fail(err: Error): void {
    if (!this.failure) {
      this.failure = err;
      this.options.log.error('capture stopped', { vhost: this.vhost, queue: this.queue, err: err.message });
      // Stop the deliveries too: nothing read from here on could be used.
      const { channel, consumerTag } = this;
      if (channel && consumerTag) Promise.resolve().then(() => channel.cancel(consumerTag)).catch(() => {});
    }
    const waiters = this.fenceWaiters;
    this.fenceWaiters = [];
    for (const wake of waiters) wake();
  }

  /** Writes every buffered record to a segment. Flushes run one at a time, in offset order. */
  flush(): Promise<void> {
    this.backlog += 1;
    const run = this.flushing
      .then(() => {
        this.sizeFlushQueued = false;
        return this.writeBuffered();
      })
      .finally(() => {
        this.backlog -= 1;
        if (this.backlog <= 2) this.ackPending();
      });
    this.flushing = run.catch(() => {});
    return run;
  }

  private async writeBuffered(): Promise<void> {
    if (this.buffer.length === 0) return;
    const records = this.buffer;
    this.buffer = [];
    this.bufferBytes = 0;
    // A segment holds contiguous offsets: the buffer is cut at the holes the broker leaves.
    let first = 0;
    try {
      while (first < records.length) {
        let end = first + 1;
        while (end < records.length && records[end].offset === records[end - 1].offset + 1) end += 1;
        await this.writeSegment(records.slice(first, end));
        first = end;
      }
    } catch (err) {
      // Put what was not written back in front so nothing is lost; the next flush retries it.
      this.buffer = records.slice(first).concat(this.buffer);
      this.bufferBytes = this.buffer.reduce((n, r) => n + r.body.length + 64, 0);
      throw err;
    }
  }

  private async writeSegment(records: JournalRecord[]): Promise<void> {
    const first = records[0].offset;
    const last = records[records.length - 1].offset;
    if (records.every((r) => r.fenceEpoch > 0)) {
      // Only fences (an idle queue between rounds): a cut needs their offsets covered, not their
      // content, so they are noted as a fence range and nothing is written.
      this.ledger.written(fenceRangeRefOf(fenceRangeKey(this.vhost, this.queue, first, last), records));
      return;
    }
    const { bytes, sha256, codec } = await encodeSegment(
      { formatVersion: 1, vhost: this.vhost, queue: this.queue, journal: this.journal, firstOffset: first, lastOffset: last, records },
      this.codec,
      this.options.store.vault,
    );
    const key = segmentKey(this.vhost, this.queue, first, last, sha256);
    const startedAt = performance.now();
    try {
      await this.options.store.put(key, bytes);
    } catch (err) {
      this.options.uploads?.failed(err, (performance.now() - startedAt) / 1000);
      throw err;
    }
    this.options.uploads?.uploaded(bytes.length, (performance.now() - startedAt) / 1000);
    this.ledger.written(segmentRefOf(key, records, bytes, sha256, codec));
  }

  /**
   * Phase one for this queue: waits until fence `epoch` has been read, makes every record before
   * it durable, and returns this queue's part of the checkpoint. The fence itself need not be
   * durable: the checkpoint holds [start, cut), and a resume reads the fence from the journal.
   * Every offset below the cut must be in some ref, so an idle queue notes the previous round's
   * fence as a fence range every other round, without writing an object.
   */
  async prepare(epoch: number, roundId: string, signal: AbortSignal, census?: QueueCensus): Promise<QueueCheckpoint> {
    const fence = await this.waitForFence(epoch, roundId, signal);
    while (!this.ledger.durableThrough(fence)) {
      if (signal.aborted) throw new PrepareTimeoutError(`prepare of epoch ${epoch} for ${this.vhost}/${this.queue} ran out of time`);
      await this.flush();
    }
    return this.ledger.part(fence, { definition: this.definition, journal: this.journal, startOffset: this.cursor.startOffset }, '', { epoch, census });
  }

  private waitForFence(epoch: number, roundId: string, signal: AbortSignal): Promise<FencePosition> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        if (this.failure) {
          reject(this.failure);
          return true;
        }
        const fence = this.ledger.fence(epoch, roundId);
        if (fence) {
          resolve(fence);
          return true;
        }
        if (signal.aborted) {
          reject(new FenceNotSeenError(epoch, `fence ${epoch} not yet seen in journal ${this.journal} (read up to offset ${this.cursor.nextOffset}) when the prepare deadline passed`));
          return true;
        }
        return false;
      };
      if (check()) return;
      const wake = () => {
        if (!check()) this.fenceWaiters.push(wake);
      };
      this.fenceWaiters.push(wake);
      signal.addEventListener('abort', () => check(), { once: true });
    });
  }

  /** The round of `epoch` committed: its cut becomes this queue's base (CaptureLedger.commit). */
  commit(epoch: number, roundId: string): void {
    this.ledger.commit(epoch, roundId);
  }

  /** The round of `epoch` aborted: forget its fence; the records stay for the next round. */
  abort(epoch: number, roundId: string): void {
    this.ledger.abort(epoch, roundId);
  }

  /**
   * Flushes on a timer so a quiet queue's records do not wait for a round or a full segment.
   * Fences alone wait for the next message: storing them proves nothing a cut needs.
   */
  tick(): void {
    if (this.buffer.some((r) => r.fenceEpoch === 0) && !this.failure) {
      this.flush().catch((err) => this.options.log.warn('flush failed; will retry', { vhost: this.vhost, queue: this.queue, err: errorMessage(err) }));
    }
  }
}
