/**
 * The worker's Prometheus metrics (docs/OPERATIONS.md#metrics): capture lag and progress per
 * queue, segment uploads, store operations, restore publishing, and the process. Counters count
 * as things happen; capture figures are read from the captures when scraped, so a scrape shows
 * what `tidemark status` does. Each worker has its own registry (not prom-client's global one).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RestoreProgress } from '../gen/tidemark/v1/worker.js';
import type { SegmentUploadObserver } from './queue-capture.js';
import type { StoreObserver, StoreOperation } from '../core/store/index.js';

/** What a scrape reads of one capture. */
export interface CaptureReading {
  vhost: string;
  queue: string;
  durableOffset: number;
  bufferedBytes: number;
  failed: boolean;
  lagMessages: number;
  lagSeconds: number;
}

/** Uploads of a segment (a few KiB to segmentBytes) take milliseconds on a local store, seconds on a slow S3. */
const UPLOAD_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const STORE_OPS: StoreOperation[] = ['put', 'get', 'has', 'list', 'delete'];

export class WorkerMetrics {
  readonly registry = new Registry();
  private readonly uploadSeconds: Histogram;
  private readonly uploadBytes: Counter;
  private readonly uploadErrors: Counter<'kind'>;
  private readonly storeSeconds: Histogram<'op'>;
  private readonly storeErrors: Counter<'op' | 'kind'>;
  private readonly storeWritten: Counter;
  private readonly storeRead: Counter;
  private readonly restoredMessages: Counter;
  private readonly restoredBytes: Counter;
  private readonly restoreQueues: Counter<'outcome'>;

  constructor(read: { captures(): CaptureReading[]; restoresRunning(): number }) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const perQueue = (name: string, help: string, value: (c: CaptureReading) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['vhost', 'queue'],
        registers,
        collect() {
          // Rebuilt on every scrape: a queue this worker no longer captures has no series.
          this.reset();
          for (const c of read.captures()) this.set({ vhost: c.vhost, queue: c.queue }, value(c));
        },
      });
    const gauge = (name: string, help: string, value: () => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(value());
        },
      });

    perQueue('tidemark_capture_lag_messages', 'Journal offsets of the queue known to exist (read, or seen by the lag probe) and not yet durable in the store; fences and markers count as offsets.', (c) => c.lagMessages);
    perQueue('tidemark_capture_lag_seconds', 'How long the oldest journal offset of the queue not yet durable has been known to exist (0 when capture is caught up).', (c) => c.lagSeconds);
    perQueue('tidemark_capture_durable_offset', 'Journal offset below which every record of the queue is durable in the store: it grows as capture makes progress.', (c) => c.durableOffset);
    gauge('tidemark_captured_queues', 'Queues this worker captures (its assignment).', () => read.captures().length);
    gauge('tidemark_capture_failed_queues', 'Captured queues whose capture stopped with an error (status shows it); they vote NO until reassigned.', () => read.captures().filter((c) => c.failed).length);
    gauge('tidemark_capture_max_lag_seconds', 'The largest tidemark_capture_lag_seconds of this worker\'s queues (0 without queues): the lag alert without per-queue series.', () => Math.max(0, ...read.captures().map((c) => c.lagSeconds)));
    gauge('tidemark_capture_buffered_bytes', 'Bytes of journal records read and not yet written to a segment, over all queues (64 bytes counted per record besides its body).', () => read.captures().reduce((n, c) => n + c.bufferedBytes, 0));

    this.uploadSeconds = new Histogram({ name: 'tidemark_segment_upload_duration_seconds', help: 'Time to write one segment to the store (successful uploads).', buckets: UPLOAD_BUCKETS, registers });
    this.uploadBytes = new Counter({ name: 'tidemark_segment_upload_bytes_total', help: 'Stored (compressed, encrypted) bytes of the segments written.', registers });
    this.uploadErrors = new Counter({ name: 'tidemark_segment_upload_errors_total', help: 'Segment writes that failed, by kind (network, throttled, access-denied, not-found, no-space, other); capture retries them.', labelNames: ['kind'], registers });
    this.storeSeconds = new Histogram({ name: 'tidemark_store_operation_duration_seconds', help: 'Duration of this worker\'s object store operations, by operation (put, get, has, list, delete), failed ones included.', labelNames: ['op'], buckets: UPLOAD_BUCKETS, registers });
    this.storeErrors = new Counter({ name: 'tidemark_store_operation_errors_total', help: 'Object store operations that failed, by operation and kind (a get of a missing object is not-found).', labelNames: ['op', 'kind'], registers });
    this.storeWritten = new Counter({ name: 'tidemark_store_written_bytes_total', help: 'Bytes this worker wrote to the object store (segments and staged partition manifests).', registers });
    this.storeRead = new Counter({ name: 'tidemark_store_read_bytes_total', help: 'Bytes this worker read from the object store (restores, manifests).', registers });
    this.restoredMessages = new Counter({ name: 'tidemark_restore_published_messages_total', help: 'Messages restore tasks on this worker published and got confirmed by the target broker (resumed ones found already there not counted).', registers });
    this.restoredBytes = new Counter({ name: 'tidemark_restore_published_bytes_total', help: 'Body bytes of those messages.', registers });
    this.restoreQueues = new Counter({ name: 'tidemark_restore_queues_total', help: 'Queues restore tasks on this worker finished, by outcome (done, failed).', labelNames: ['outcome'], registers });
    gauge('tidemark_restore_tasks_running', 'Restore tasks this worker runs now.', () => read.restoresRunning());
    for (const outcome of ['done', 'failed']) this.restoreQueues.inc({ outcome }, 0);
    for (const op of STORE_OPS) {
      this.storeSeconds.zero({ op });
      this.storeErrors.inc({ op, kind: 'other' }, 0);
    }
    this.uploadErrors.inc({ kind: 'other' }, 0);
  }

  /** Counts segment uploads (QueueCapture's observer). */
  readonly uploads: SegmentUploadObserver = {
    uploaded: (bytes, seconds) => {
      this.uploadBytes.inc(bytes);
      this.uploadSeconds.observe(seconds);
    },
    failed: (err) => this.uploadErrors.inc({ kind: storeErrorKind(err) }),
  };

  /** Counts object store operations (meteredStore's observer). */
  readonly store: StoreObserver = {
    finished: (op, seconds, bytes) => {
      this.storeSeconds.observe({ op }, seconds);
      if (op === 'put') this.storeWritten.inc(bytes);
      if (op === 'get') this.storeRead.inc(bytes);
    },
    failed: (op, seconds, err) => {
      this.storeSeconds.observe({ op }, seconds);
      this.storeErrors.inc({ op, kind: storeErrorKind(err) });
    },
  };

  /**
   * Counts what a restore task's progress events add. Events carry running totals per queue, so
   * the returned function keeps the last totals of each queue of one task.
   */
  restoreTask(): (progress: RestoreProgress) => void {
    const seen = new Map<string, { published: number; bytes: number; done: boolean }>();
    return (p) => {
      const key = `${p.sourceVhost}\u0000${p.sourceQueue}`;
      const before = seen.get(key) ?? { published: 0, bytes: 0, done: false };
      const published = Math.max(0, p.confirmed - p.skipped);
      if (published > before.published) this.restoredMessages.inc(published - before.published);
      if (p.bodyBytes > before.bytes) this.restoredBytes.inc(p.bodyBytes - before.bytes);
      const done = before.done || p.done || p.error !== '';
      if (done && !before.done) this.restoreQueues.inc({ outcome: p.error === '' ? 'done' : 'failed' });
      seen.set(key, { published: Math.max(published, before.published), bytes: Math.max(p.bodyBytes, before.bytes), done });
    };
  }
}

/** A bounded label for a store error: what an operator does about it differs by kind. */
export function storeErrorKind(err: unknown): string {
  const e = err as { name?: string; code?: string; statusCode?: number; cause?: unknown } | undefined;
  const code = String(e?.code ?? '');
  const name = String(e?.name ?? '');
  if (name === 'ObjectNotFoundError' || code === 'NoSuchKey' || code === 'ENOENT') return 'not-found';
  if (['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'EACCES', 'EPERM', 'EROFS'].includes(code) || e?.statusCode === 403) return 'access-denied';
  if (['SlowDown', 'ServiceUnavailable', 'RequestTimeTooSkewed'].includes(code) || e?.statusCode === 503) return 'throttled';
  if (code === 'ENOSPC' || code === 'EDQUOT') return 'no-space';
  if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_SOCKET'].includes(code)) return 'network';
  if (e?.cause && e.cause !== err) return storeErrorKind(e.cause);
  return 'other';
}
