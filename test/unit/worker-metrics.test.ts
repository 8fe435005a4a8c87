import { describe, expect, it } from 'vitest';
import { type CaptureReading, storeErrorKind, WorkerMetrics } from '../../services/worker/worker-metrics.js';
import { meteredStore, type ObjectStore } from '../../services/core/store/index.js';
import { ObjectNotFoundError } from '../../services/core/index.js';
import type { RestoreProgress } from '../../services/gen/tidemark/v1/worker.js';
import { parseMetrics as samples } from '../helpers/metrics.js';

const capture = (queue: string, over: Partial<CaptureReading> = {}): CaptureReading => ({ vhost: 'v1', queue, durableOffset: 10, bufferedBytes: 100, failed: false, lagMessages: 0, lagSeconds: 0, ...over });
const progress = (over: Partial<RestoreProgress>): RestoreProgress => ({ workerId: 'w', sourceVhost: 'v1', sourceQueue: 'q', targetVhost: 'v1', targetQueue: 'q', confirmed: 0, total: 10, done: false, error: '', bodyBytes: 0, skipped: 0, ...over });

describe('worker metrics', () => {
  it('shows each captured queue\'s lag and progress, and drops a queue the worker released', async () => {
    let captures = [capture('a', { lagMessages: 40, lagSeconds: 12.5, durableOffset: 300 }), capture('b', { failed: true })];
    const metrics = new WorkerMetrics({ captures: () => captures, restoresRunning: () => 2 });
    let m = samples(await metrics.registry.metrics());
    expect(m.get('tidemark_capture_lag_messages{vhost="v1",queue="a"}')).toBe(40);
    expect(m.get('tidemark_capture_lag_seconds{vhost="v1",queue="a"}')).toBe(12.5);
    expect(m.get('tidemark_capture_durable_offset{vhost="v1",queue="a"}')).toBe(300);
    expect(m.get('tidemark_capture_max_lag_seconds')).toBe(12.5);
    expect(m.get('tidemark_capture_buffered_bytes')).toBe(200);
    expect(m.get('tidemark_captured_queues')).toBe(2);
    expect(m.get('tidemark_capture_failed_queues')).toBe(1);
    expect(m.get('tidemark_restore_tasks_running')).toBe(2);
    expect(m.get('process_resident_memory_bytes')).toBeGreaterThan(0);

    captures = [capture('b')];
    m = samples(await metrics.registry.metrics());
    expect(m.has('tidemark_capture_lag_seconds{vhost="v1",queue="a"}')).toBe(false);
    expect(m.get('tidemark_capture_max_lag_seconds')).toBe(0);
  });

  it('counts what restore progress events add, once per queue, skipped messages not published', async () => {
    const metrics = new WorkerMetrics({ captures: () => [], restoresRunning: () => 0 });
    const count = metrics.restoreTask();
    count(progress({ confirmed: 5, skipped: 3, bodyBytes: 50 }));
    count(progress({ confirmed: 8, skipped: 3, bodyBytes: 80 }));
    count(progress({ confirmed: 10, skipped: 3, bodyBytes: 100, done: true }));
    count(progress({ confirmed: 10, skipped: 3, bodyBytes: 100, done: true })); // repeated
    count(progress({ sourceQueue: 'r', confirmed: 1, bodyBytes: 7, error: 'target gone' }));
    const m = samples(await metrics.registry.metrics());
    expect(m.get('tidemark_restore_published_messages_total')).toBe(7 + 1);
    expect(m.get('tidemark_restore_published_bytes_total')).toBe(107);
    expect(m.get('tidemark_restore_queues_total{outcome="done"}')).toBe(1);
    expect(m.get('tidemark_restore_queues_total{outcome="failed"}')).toBe(1);
  });

  it('times store operations through the metered store and counts failures by kind', async () => {
    const metrics = new WorkerMetrics({ captures: () => [], restoresRunning: () => 0 });
    const objects = new Map<string, Buffer>();
    const inner: ObjectStore = {
      url: 'file:///x',
      put: async (k, b) => void objects.set(k, b),
      get: async (k) => {
        const b = objects.get(k);
        if (!b) throw new ObjectNotFoundError(k, 'file:///x');
        return b;
      },
      has: async (k) => objects.has(k),
      list: async () => [...objects.keys()],
      listObjects: async () => [],
      delete: async (k) => void objects.delete(k),
      close: async () => {},
    };
    const store = meteredStore(inner, metrics.store);
    await store.put('a', Buffer.alloc(1000));
    await store.get('a');
    await expect(store.get('missing')).rejects.toThrow(ObjectNotFoundError);
    metrics.uploads.uploaded(1000, 0.02);
    metrics.uploads.failed(Object.assign(new Error('x'), { code: 'SlowDown' }), 0.1);
    const m = samples(await metrics.registry.metrics());
    expect(m.get('tidemark_store_operation_duration_seconds_count{op="put"}')).toBe(1);
    expect(m.get('tidemark_store_operation_duration_seconds_count{op="get"}')).toBe(2);
    expect(m.get('tidemark_store_operation_errors_total{op="get",kind="not-found"}')).toBe(1);
    expect(m.get('tidemark_store_written_bytes_total')).toBe(1000);
    expect(m.get('tidemark_store_read_bytes_total')).toBe(1000);
    expect(m.get('tidemark_segment_upload_bytes_total')).toBe(1000);
    expect(m.get('tidemark_segment_upload_duration_seconds_count')).toBe(1);
    expect(m.get('tidemark_segment_upload_errors_total{kind="throttled"}')).toBe(1);
  });

  it('names store error kinds from S3 codes, system errors and causes', () => {
    expect(storeErrorKind(Object.assign(new Error(), { code: 'AccessDenied' }))).toBe('access-denied');
    expect(storeErrorKind(Object.assign(new Error(), { code: 'ECONNREFUSED' }))).toBe('network');
    expect(storeErrorKind(Object.assign(new Error(), { code: 'ENOSPC' }))).toBe('no-space');
    expect(storeErrorKind(new Error('wrapped', { cause: Object.assign(new Error(), { code: 'ETIMEDOUT' }) }))).toBe('network');
    expect(storeErrorKind(new Error('strange'))).toBe('other');
    expect(storeErrorKind(undefined)).toBe('other');
  });
});
