/**
 * `tidemark verify` against real checkpoint data in a real store (a directory, and S3): segments
 * written by the product's segment encoder, manifests published through the Catalog. Verify must
 * pass intact data and name each kind of damage a restore would trip over — a deleted or
 * corrupted segment, a missing or corrupt manifest in a queue's chain — and, with --full only,
 * segments whose records do not match their manifest. Every damage is reported, not the first.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { verifyCheckpoint, type VerifyCheckpointOptions } from '../../services/coordinator/verify.js';
import { Catalog } from '../../services/core/state/catalog.js';
import { ConfigError, NotFoundError } from '../../services/core/errors.js';
import { encodeSegment, gzipCodec, segmentRefOf, sha256Hex } from '../../services/core/format/segment-codec.js';
import { checkpointKey, segmentKey } from '../../services/core/store/keys.js';
import type { ObjectStore } from '../../services/core/store/object-store.js';
import { openStore } from '../../services/core/store/open-store.js';
import type { VerifyDone, VerifyEvent, VerifyProblem, VerifyProgress } from '../../services/gen/tidemark/v1/admin.js';
import { CheckpointManifest, Segment, type QueueCheckpoint, type Record as JournalRecord, type SegmentRef } from '../../services/gen/tidemark/v1/store.js';
import { testServices, uniqueName, type TestServices } from '../helpers/services.js';
import { WatchedStore } from '../helpers/watched-store.js';

const VHOST = 'prod';
/** Records per segment: small, so each queue has several segments per checkpoint. */
const SEGMENT_RECORDS = 10;

/**
 * One queue's journal as a worker would capture it: data records, and a fence record per
 * checkpoint whose offset is that checkpoint's cut.
 */
class Journal {
  private next = 0;
  /** Segments written since the last checkpoint: the next entry's own segments. */
  private fresh: SegmentRef[] = [];
  private dataMessages = 0;
  private bodyBytes = 0;

  constructor(
    private readonly store: ObjectStore,
    readonly queue: string,
  ) {}

  /**
   * Appends `messages` data records and the fence of `epoch`, writing segments as it goes.
   * `dropOffset` leaves one record out of its segment while the segment still claims the whole
   * range, and its checksum still matches: damage only decoding can find.
   */
  async capture(messages: number, epoch: number, dropOffset?: number): Promise<number> {
    const records: JournalRecord[] = [];
    for (let i = 0; i < messages; i += 1) records.push(this.record(0));
    const fence = this.record(epoch);
    records.push(fence);
    for (let i = 0; i < records.length; i += SEGMENT_RECORDS) {
      this.fresh.push(await this.writeSegment(records.slice(i, i + SEGMENT_RECORDS), dropOffset));
    }
    return fence.offset;
  }

  /** This queue's entry in the checkpoint whose fence is at `cutOffset`. */
  entry(cutOffset: number, baseEpoch: number): QueueCheckpoint {
    const segments = this.fresh;
    this.fresh = [];
    return {
      definition: { vhost: VHOST, name: this.queue, type: 'classic', durable: true, autoDelete: false, arguments: undefined, bindings: [] },
      journal: `tidemark.journal.${this.queue}`,
      startOffset: 0,
      cutOffset,
      messages: this.dataMessages,
      bodyBytes: this.bodyBytes,
      segments,
      baseEpoch,
      workerId: 'w1',
      incomplete: [],
      headOffset: 0, headMessages: 0, possiblyAcked: 0, headBasis: '', predating: 0, outsideCut: undefined, historyOffset: 0, historyMessages: 0, headKnown: false,
    };
  }

  private record(fenceEpoch: number): JournalRecord {
    const offset = this.next;
    this.next += 1;
    const body = Buffer.from(fenceEpoch ? `fence ${fenceEpoch}` : `${this.queue} message ${offset}`);
    if (!fenceEpoch) {
      this.dataMessages += 1;
      this.bodyBytes += body.length;
    }
    return { offset, exchange: fenceEpoch ? 'tidemark.fence' : 'app', routingKey: this.queue, properties: undefined, body, captureTimeMs: 1_700_000_000_000 + offset, fenceEpoch };
  }

  private async writeSegment(records: JournalRecord[], dropOffset: number | undefined): Promise<SegmentRef> {
    const first = records[0].offset;
    const last = records[records.length - 1].offset;
    const segment: Segment = { formatVersion: 1, vhost: VHOST, queue: this.queue, journal: `tidemark.journal.${this.queue}`, firstOffset: first, lastOffset: last, records };
    let bytes: Buffer;
    if (dropOffset !== undefined && dropOffset >= first && dropOffset <= last) {
      // The segment encoder refuses a gap, so this one is encoded by hand.
      const damaged = { ...segment, records: records.filter((r) => r.offset !== dropOffset) };
      bytes = await gzipCodec.compress(Buffer.from(Segment.encode(damaged).finish()));
    } else {
      bytes = (await encodeSegment(segment, gzipCodec)).bytes;
    }
    const sha256 = sha256Hex(bytes);
    const key = segmentKey(VHOST, this.queue, first, last, sha256);
    await this.store.put(key, bytes);
    return segmentRefOf(key, records, bytes, sha256, gzipCodec.name);
  }
}

/** Publishes checkpoint `epoch` with the given entries, as the leader does after COMMIT. */
async function publish(catalog: Catalog, epoch: number, parentEpoch: number, queues: QueueCheckpoint[]): Promise<CheckpointManifest> {
  const manifest = CheckpointManifest.fromPartial({
    formatVersion: 1,
    epoch,
    parentEpoch,
    full: queues.every((q) => q.baseEpoch === 0),
    startedAtMs: 1_700_000_000_000 + epoch * 1000,
    committedAtMs: 1_700_000_000_500 + epoch * 1000,
    leaderToken: 1,
    coordinatorId: 'test',
    queues,
    messages: queues.reduce((n, q) => n + q.messages, 0),
    bodyBytes: queues.reduce((n, q) => n + q.bodyBytes, 0),
    roundId: `round-${epoch}`,
  });
  await catalog.publish(manifest);
  return manifest;
}

interface Verified {
  done: VerifyDone;
  events: VerifyEvent[];
  problems: VerifyProblem[];
  progress: VerifyProgress[];
}

async function verify(catalog: Catalog, store: ObjectStore, id: string, options: Partial<VerifyCheckpointOptions> = {}): Promise<Verified> {
  const events: VerifyEvent[] = [];
  const done = await verifyCheckpoint(catalog, store, id, { full: false, ...options, emit: (e) => events.push(e) });
  const problems = events.flatMap((e) => (e.event?.$case === 'problem' ? [e.event.value] : []));
  const progress = events.flatMap((e) => (e.event?.$case === 'progress' ? [e.event.value] : []));
  return { done, events, problems, progress };
}

/** Flips bytes in the middle of an object; its size stays the same. */
async function flipBytes(store: ObjectStore, key: string): Promise<void> {
  const bytes = Buffer.from(await store.get(key));
  for (let i = bytes.length >> 1; i < Math.min(bytes.length, (bytes.length >> 1) + 4); i += 1) bytes[i] ^= 0xff;
  await store.put(key, bytes);
}

describe.each([{ kind: 'file' as const }, { kind: 's3' as const }])('verify on a $kind store', ({ kind }) => {
  let services: TestServices;
  let dir: string;
  let store: ObjectStore;
  let catalog: Catalog;
  let orders: Journal;
  let billing: Journal;
  /** Checkpoint 1 is full; checkpoint 2 builds on it for both queues. */
  let first: CheckpointManifest;
  let second: CheckpointManifest;

  /** The `index`th segment, in offset order, of `queue`'s entry in `manifest`. */
  const segmentOf = (manifest: CheckpointManifest, queue: string, index = 0): SegmentRef =>
    [...manifest.queues.find((q) => q.definition?.name === queue)!.segments].sort((a, b) => a.firstOffset - b.firstOffset)[index];
  const allSegments = (): SegmentRef[] => [...first.queues, ...second.queues].flatMap((q) => q.segments);

  beforeAll(async () => {
    services = await testServices();
  });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tidemark-verify-'));
    store = await openStore({
      store: kind === 's3' ? `s3://tm-verify/${uniqueName('run')}` : pathToFileURL(dir).href,
      s3Endpoint: services.s3.endpoint,
      s3AccessKey: services.s3.accessKey,
      s3SecretKey: services.s3.secretKey,
      s3Region: services.s3.region,
    });
    catalog = new Catalog(store);
    orders = new Journal(store, 'orders');
    billing = new Journal(store, 'billing');
    first = await publish(catalog, 1, 0, [orders.entry(await orders.capture(25, 1), 0), billing.entry(await billing.capture(8, 1), 0)]);
    second = await publish(catalog, 2, 1, [orders.entry(await orders.capture(17, 2), 1), billing.entry(await billing.capture(4, 2), 1)]);
  });

  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('passes an intact chain, reading every segment of both checkpoints once, and ends with progress at the totals and then done', async () => {
    for (const full of [false, true]) {
      const watched = new WatchedStore(store);
      const { done, events, problems, progress } = await verify(catalog, watched, 'latest', { full });
      expect(problems).toEqual([]);
      const segments = allSegments();
      const totalBytes = segments.reduce((n, s) => n + s.storedBytes, 0);
      expect(done).toMatchObject({ checkpoint: 2, full, manifests: 2, segments: segments.length, bytes: totalBytes, problems: 0 });
      // --full decodes every record, fences included: 25 + 17 + 8 + 4 messages and 4 fences.
      expect(done.records).toBe(full ? 58 : 0);
      expect(events.at(-1)).toEqual({ event: { $case: 'done', value: done } });
      expect(progress.at(-1)).toEqual({ objectsChecked: segments.length, objectsTotal: segments.length, bytesChecked: totalBytes, bytesTotal: totalBytes });
      const segmentReads = watched.gets.filter((key) => key.startsWith('segments/'));
      expect(segmentReads.sort()).toEqual(segments.map((s) => s.key).sort());
    }
  });

  it('reports a deleted segment of a base checkpoint by key and queue, says what to do, and still checks the rest', async () => {
    const lost = segmentOf(first, 'orders', 1);
    await store.delete(lost.key);
    for (const full of [false, true]) {
      const { done, problems } = await verify(catalog, store, '2', { full });
      expect(problems).toEqual([{ key: lost.key, vhost: VHOST, queue: 'orders', message: expect.stringContaining('is missing from the store') }]);
      expect(problems[0].message).toContain(`Put an intact copy of ${lost.key} back`);
      expect(problems[0].message).toContain(`at most ${lost.firstOffset}`);
      expect(done.problems).toBe(1);
      // Every object was still looked at, the missing one included.
      expect(done.segments).toBe(allSegments().length);
    }
  });

  it('reports a segment whose bytes were flipped (same size) as a checksum mismatch, once, in both modes', async () => {
    const damaged = segmentOf(second, 'billing');
    await flipBytes(store, damaged.key);
    for (const full of [false, true]) {
      const { done, problems } = await verify(catalog, store, '2', { full });
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatchObject({ key: damaged.key, vhost: VHOST, queue: 'billing' });
      expect(problems[0].message).toMatch(/sha256/);
      expect(done.problems).toBe(1);
    }
  });

  it('reports a truncated segment by its size', async () => {
    const damaged = segmentOf(first, 'orders');
    await store.put(damaged.key, (await store.get(damaged.key)).subarray(0, 20));
    const { problems } = await verify(catalog, store, '2');
    expect(problems).toEqual([
      { key: damaged.key, vhost: VHOST, queue: 'orders', message: expect.stringContaining(`is 20 bytes in the store, but its manifest records ${damaged.storedBytes}`) },
    ]);
  });

  it('reports every damaged object, not only the first: a deleted and a corrupted segment of different queues', async () => {
    const lost = segmentOf(second, 'orders');
    const damaged = segmentOf(first, 'billing');
    await store.delete(lost.key);
    await flipBytes(store, damaged.key);
    const { done, problems } = await verify(catalog, store, '2', { concurrency: 1 });
    expect(problems.map((p) => p.key).sort()).toEqual([lost.key, damaged.key].sort());
    expect(done.problems).toBe(2);
  });

  it('reports a missing base manifest for each queue whose chain needs it', async () => {
    await store.delete(checkpointKey(1));
    const { done, problems } = await verify(catalog, store, '2');
    expect(problems.map((p) => [p.key, p.vhost, p.queue])).toEqual([
      [checkpointKey(1), VHOST, 'orders'],
      [checkpointKey(1), VHOST, 'billing'],
    ]);
    for (const p of problems) expect(p.message).toMatch(/builds on checkpoint 1, but the manifest of checkpoint 1 .* is missing/);
    expect(done.manifests).toBe(2);
    expect(done.problems).toBe(2);
  });

  it('reports a corrupt base manifest the same way', async () => {
    await flipBytes(store, checkpointKey(1));
    const { problems } = await verify(catalog, store, '2');
    expect(problems.map((p) => p.queue)).toEqual(['orders', 'billing']);
    for (const p of problems) expect(p.message).toMatch(/checkpoint manifest .* is corrupt/);
  });

  it('reports a base checkpoint that holds no entry for a queue built on it', async () => {
    const refunds = new Journal(store, 'refunds');
    await publish(catalog, 3, 2, [refunds.entry(await refunds.capture(3, 3), 2)]);
    const { problems } = await verify(catalog, store, '3');
    expect(problems).toEqual([{ key: checkpointKey(2), vhost: VHOST, queue: 'refunds', message: expect.stringContaining('checkpoint 2 holds no entry for prod/refunds') }]);
  });

  it('does not need a missing parent manifest when no queue builds on it', async () => {
    // Checkpoint 3 is consolidated (every entry full), so checkpoint 2 is only its parent.
    const third = await catalog.consolidate({ ...second, epoch: 3, parentEpoch: 2 });
    await catalog.publish(third);
    await store.delete(checkpointKey(2));
    const { done, problems } = await verify(catalog, store, '3', { full: true });
    expect(problems).toEqual([]);
    expect(done).toMatchObject({ manifests: 1, problems: 0 });
  });

  it("reports the checkpoint's own corrupt manifest as a problem, not an error, even when the catalog has it cached", async () => {
    await flipBytes(store, checkpointKey(2));
    // `catalog` published checkpoint 2 and still holds it decoded; a fresh one must read it.
    for (const resolver of [catalog, new Catalog(store)]) {
      const { done, problems } = await verify(resolver, store, '2');
      expect(problems).toEqual([{ key: checkpointKey(2), vhost: '', queue: '', message: expect.stringMatching(/corrupt.*no queue of checkpoint 2 can be restored/) }]);
      expect(done).toMatchObject({ checkpoint: 2, problems: 1, segments: 0 });
    }
  });

  it('finds a segment whose records skip an offset only with --full, naming the segment', async () => {
    const gappy = new Journal(store, 'refunds');
    // Offset 13 is left out of segment 10..19, whose checksum still matches its ref.
    const third = await publish(catalog, 3, 2, [gappy.entry(await gappy.capture(20, 3, 13), 0)]);
    const quick = await verify(catalog, store, '3');
    expect(quick.problems).toEqual([]);
    const full = await verify(catalog, store, '3', { full: true });
    const bad = third.queues[0].segments.find((s) => s.firstOffset === 10)!;
    expect(full.problems).toEqual([{ key: bad.key, vhost: VHOST, queue: 'refunds', message: expect.stringMatching(/offset gap.*Put an intact copy/) }]);
  });

  it('finds a queue whose segments hold fewer messages than its entry says only with --full', async () => {
    const entry = orders.entry(await orders.capture(5, 3), 2);
    await publish(catalog, 3, 2, [{ ...entry, messages: entry.messages + 1 }]);
    expect((await verify(catalog, store, '3')).problems).toEqual([]);
    const { problems } = await verify(catalog, store, '3', { full: true });
    const says = new RegExp(`hold ${entry.messages} message\\(s\\).*says ${entry.messages + 1}`);
    expect(problems).toEqual([{ key: '', vhost: VHOST, queue: 'orders', message: expect.stringMatching(says) }]);
  });

  it('refuses an unknown checkpoint id with the catalog error before any event', async () => {
    const events: VerifyEvent[] = [];
    const emit = (e: VerifyEvent) => events.push(e);
    await expect(verifyCheckpoint(catalog, store, '99', { full: false, emit })).rejects.toBeInstanceOf(NotFoundError);
    await expect(verifyCheckpoint(catalog, store, 'yesterday', { full: false, emit })).rejects.toBeInstanceOf(ConfigError);
    expect(events).toEqual([]);
  });

  it('reads at most `concurrency` objects at once, 4 by default', async () => {
    for (const concurrency of [undefined, 2]) {
      const slow = new WatchedStore(store, { readDelayMs: 50 });
      await verify(catalog, slow, '2', { concurrency });
      expect(slow.mostInFlight).toBe(concurrency ?? 4);
    }
  });

  it('stops when its signal aborts: it rejects with the reason and sends no done', async () => {
    for (const full of [false, true]) {
      const events: VerifyEvent[] = [];
      const stop = new AbortController();
      setTimeout(() => stop.abort(new Error('client went away')), 120);
      const run = verifyCheckpoint(catalog, new WatchedStore(store, { readDelayMs: 50 }), '2', { full, concurrency: 1, signal: stop.signal, emit: (e) => events.push(e) });
      await expect(run).rejects.toThrow('client went away');
      expect(events.some((e) => e.event?.$case === 'done')).toBe(false);
    }
  });

  it('sends progress at most every 250 ms, and once more at the end', async () => {
    const times: number[] = [];
    const slow = new WatchedStore(store, { readDelayMs: 100 });
    await verifyCheckpoint(catalog, slow, '2', {
      full: false,
      concurrency: 1,
      emit: (e) => {
        if (e.event?.$case === 'progress') times.push(Date.now());
      },
    });
    // 7 objects one at a time, 100 ms each: at least 700 ms, so there are events on the way
    // between the first and the last, and the gaps below are not vacuous.
    expect(allSegments()).toHaveLength(7);
    expect(times.length).toBeGreaterThanOrEqual(4);
    const gaps = times.slice(1, -1).map((t, i) => t - times[i]);
    // A little under 250 ms: timers may fire a millisecond early.
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(245);
  });
});

