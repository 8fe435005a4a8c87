import { mkdtemp, rm } from 'node:fs/promises';
import { WatchedStore } from '../helpers/watched-store.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Catalog } from '../../services/core/state/catalog.js';
import { ConfigError, CorruptDataError, NotFoundError } from '../../services/core/errors.js';
import { gzipCodec, encodeSegment, fenceRangeRefOf, segmentRefOf } from '../../services/core/format/segment-codec.js';
import { readPrefix, verifyPrefix, VERIFY_READ_AHEAD, type PrefixSpec } from '../../services/core/format/segment-reader.js';
import { checkpointKey, fenceRangeKey, segmentKey } from '../../services/core/store/keys.js';
import { LocalStore } from '../../services/core/store/local-store.js';
import type { ObjectStore } from '../../services/core/store/object-store.js';
import type {
  CheckpointManifest,
  Record as JournalRecord,
  QueueCheckpoint,
  SegmentRef,
} from '../../services/gen/tidemark/v1/store.js';

const VHOST = '/';
const QUEUE = 'orders.eu/1';

let dir: string;
let store: LocalStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tidemark-reader-'));
  store = new LocalStore(dir, { fsync: false });
  await store.init();
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The body every data record at `offset` carries, so a test can tell records apart. */
function bodyOf(offset: number, version = 'v1'): string {
  return `message ${offset} ${version}`;
}

function record(offset: number, fenceEpoch = 0, version = 'v1'): JournalRecord {
  return {
    offset,
    exchange: fenceEpoch ? 'tidemark.fence' : 'orders',
    routingKey: `eu.${offset}`,
    properties: fenceEpoch ? undefined : { messageId: `m-${offset}`, headers: { entries: [{ key: 'n', value: { kind: { $case: 'intValue', value: offset } } }] } },
    body: fenceEpoch ? Buffer.from(JSON.stringify({ epoch: fenceEpoch })) : Buffer.from(bodyOf(offset, version)),
    captureTimeMs: 1_700_000_000_000 + offset,
    fenceEpoch,
  };
}

interface SegmentOptions {
  /** offset → fence epoch: these offsets are fence records. */
  fences?: Record<number, number>;
  vhost?: string;
  queue?: string;
  /** A different body version: the same offsets captured again (a re-capture). */
  version?: string;
}

/** Writes a real segment of offsets first..last to the store, returns its ref. */
async function writeSegment(s: ObjectStore, first: number, last: number, o: SegmentOptions = {}): Promise<SegmentRef> {
  const vhost = o.vhost ?? VHOST;
  const queue = o.queue ?? QUEUE;
  const records: JournalRecord[] = [];
  for (let off = first; off <= last; off++) records.push(record(off, o.fences?.[off] ?? 0, o.version));
  const { bytes, sha256 } = await encodeSegment(
    { formatVersion: 1, vhost, queue, journal: `tidemark.journal.${queue}`, firstOffset: first, lastOffset: last, records },
    gzipCodec,
  );
  const key = segmentKey(vhost, queue, first, last, sha256);
  await s.put(key, bytes);
  return segmentRefOf(key, records, bytes, sha256, gzipCodec.name);
}

function spec(segments: SegmentRef[], startOffset: number, cutOffset: number): PrefixSpec {
  return { vhost: VHOST, queue: QUEUE, startOffset, cutOffset, segments };
}

async function collect(s: ObjectStore, p: PrefixSpec, fromOffset?: number): Promise<JournalRecord[]> {
  const out: JournalRecord[] = [];
  for await (const r of readPrefix(s, p, fromOffset)) out.push(r);
  return out;
}

/** Reads until the generator throws; returns what was yielded and the error. */
async function collectUntilError(s: ObjectStore, p: PrefixSpec): Promise<{ yielded: JournalRecord[]; error: unknown }> {
  const yielded: JournalRecord[] = [];
  try {
    for await (const r of readPrefix(s, p)) yielded.push(r);
  } catch (error) {
    return { yielded, error };
  }
  return { yielded, error: undefined };
}

function range(first: number, lastExclusive: number, except: number[] = []): number[] {
  const out: number[] = [];
  for (let i = first; i < lastExclusive; i++) if (!except.includes(i)) out.push(i);
  return out;
}


describe('readPrefix', () => {
  it('yields exactly the data records in [start, cut), in order, byte-identical, fences left out', async () => {
    // Fence 4 at offset 12 (an earlier checkpoint), fence 5 at 30 (this cut), straddling segment.
    const segs = [
      await writeSegment(store, 0, 9),
      await writeSegment(store, 10, 19, { fences: { 12: 4 } }),
      await writeSegment(store, 20, 35, { fences: { 30: 5 } }),
    ];
    const got = await collect(store, spec(segs, 0, 30));
    expect(got.map((r) => r.offset)).toEqual(range(0, 30, [12]));
    expect(got.every((r) => r.fenceEpoch === 0)).toBe(true);
    for (const r of got) {
      expect(r).toEqual(record(r.offset));
      expect(r.body.toString()).toBe(bodyOf(r.offset));
    }
  });

  it('starts at startOffset even if the first segment holds earlier records', async () => {
    const segs = [await writeSegment(store, 0, 9), await writeSegment(store, 10, 19)];
    expect((await collect(store, spec(segs, 5, 15))).map((r) => r.offset)).toEqual(range(5, 15));
  });

  it('does not depend on the order segments are listed in', async () => {
    const segs = [await writeSegment(store, 0, 9), await writeSegment(store, 10, 19), await writeSegment(store, 20, 29)];
    const got = await collect(store, spec([segs[2], segs[0], segs[1]], 0, 25));
    expect(got.map((r) => r.offset)).toEqual(range(0, 25));
  });

  it('yields nothing for an empty prefix', async () => {
    expect(await collect(store, spec([], 7, 7))).toEqual([]);
    const seg = await writeSegment(store, 0, 9);
    expect(await collect(store, spec([seg], 4, 4))).toEqual([]);
  });

  it('yields each offset once when a segment that straddles a cut is listed twice', async () => {
    const a = await writeSegment(store, 0, 14, { fences: { 10: 1 } });
    const b = await writeSegment(store, 15, 24, { fences: { 20: 2 } });
    const got = await collect(store, spec([a, a, b, a], 0, 20));
    expect(got.map((r) => r.offset)).toEqual(range(0, 20, [10]));
  });

  it('yields each offset once when a range was captured again into a different segment', async () => {
    const first = await writeSegment(store, 0, 14);
    // A second worker re-captured 10..24: the same offsets in another object.
    const again = await writeSegment(store, 10, 24, { version: 'v2' });
    expect(again.key).not.toBe(first.key);
    const got = await collect(store, spec([first, again], 0, 25));
    expect(got.map((r) => r.offset)).toEqual(range(0, 25));
    // The duplicate offsets come from exactly one of the copies, never both.
    expect(new Set(got.map((r) => r.offset)).size).toBe(25);
  });

  it('handles a re-captured range fully contained in another segment', async () => {
    const big = await writeSegment(store, 0, 29);
    const inner = await writeSegment(store, 5, 9, { version: 'v2' });
    const got = await collect(store, spec([inner, big], 0, 30));
    expect(got.map((r) => r.offset)).toEqual(range(0, 30));
  });

  it('refuses a gap between segments with a CorruptDataError naming the gap, yielding nothing past it', async () => {
    const a = await writeSegment(store, 0, 9);
    const c = await writeSegment(store, 20, 29);
    const { yielded, error } = await collectUntilError(store, spec([a, c], 0, 30));
    expect(error).toBeInstanceOf(CorruptDataError);
    expect((error as Error).message).toContain('10..19');
    expect((error as Error).message).toContain(`${VHOST}/${QUEUE}`);
    expect((error as CorruptDataError).key).toBe(c.key);
    expect(yielded.map((r) => r.offset)).toEqual(range(0, 10));
  });

  it('reads across a hole of offsets the broker never delivers (a stream segment start), and resumes from inside one', async () => {
    const a = await writeSegment(store, 0, 9);
    const b = await writeSegment(store, 11, 19);
    const c = await writeSegment(store, 24, 29);
    expect((await collect(store, spec([a, b, c], 0, 30))).map((r) => r.offset)).toEqual(range(0, 30, [10, 20, 21, 22, 23]));
    expect((await collect(store, spec([a, b, c], 0, 30), 21)).map((r) => r.offset)).toEqual(range(24, 30));
    // A hole right before the cut's fence (the fence is not stored).
    expect((await collect(store, spec([a, b], 0, 21))).map((r) => r.offset)).toEqual(range(0, 20, [10]));
  });

  it('refuses a hole wider than the broker leaves, and a hole before the first segment', async () => {
    const a = await writeSegment(store, 0, 9);
    const far = await writeSegment(store, 15, 19);
    const { error } = await collectUntilError(store, spec([a, far], 0, 20));
    expect(error).toBeInstanceOf(CorruptDataError);
    expect((error as Error).message).toContain('10..14');
    const late = await writeSegment(store, 1, 9);
    expect((await collectUntilError(store, spec([late], 0, 10))).error).toBeInstanceOf(CorruptDataError);
  });

  it('refuses a missing first range: nothing is yielded', async () => {
    const b = await writeSegment(store, 10, 19);
    const { yielded, error } = await collectUntilError(store, spec([b], 0, 20));
    expect(error).toBeInstanceOf(CorruptDataError);
    expect((error as Error).message).toContain('0..9');
    expect(yielded).toEqual([]);
  });

  it('refuses segments that end before the cut', async () => {
    const a = await writeSegment(store, 0, 9);
    const { yielded, error } = await collectUntilError(store, spec([a], 0, 20));
    expect(error).toBeInstanceOf(CorruptDataError);
    expect((error as Error).message).toMatch(/ends at offset 10 but the cut is 20/);
    expect(yielded.map((r) => r.offset)).toEqual(range(0, 10));
    // And with no segments at all.
    expect((await collectUntilError(store, spec([], 0, 1))).error).toBeInstanceOf(CorruptDataError);
  });

  it('refuses a corrupted segment object with a CorruptDataError naming its key, using nothing from it', async () => {
    const a = await writeSegment(store, 0, 9);
    const b = await writeSegment(store, 10, 19);
    const damaged = Buffer.from(await store.get(b.key));
    damaged[damaged.length >> 1] ^= 0xff;
    await store.put(b.key, damaged);
    const { yielded, error } = await collectUntilError(store, spec([a, b], 0, 20));
    expect(error).toBeInstanceOf(CorruptDataError);
    expect((error as CorruptDataError).key).toBe(b.key);
    expect((error as Error).message).toContain(b.key);
    expect(yielded.map((r) => r.offset)).toEqual(range(0, 10));
  });

  it('refuses an object that holds a different segment than the ref promises', async () => {
    const a = await writeSegment(store, 0, 9);
    const other = await writeSegment(store, 0, 9, { version: 'v2' });
    // The ref says a's checksum, but the object at a's key now has other's bytes.
    await store.put(a.key, await store.get(other.key));
    const { error } = await collectUntilError(store, spec([a], 0, 10));
    expect(error).toBeInstanceOf(CorruptDataError);
    expect((error as CorruptDataError).key).toBe(a.key);
  });

  it('fails, not skips, when a segment object is gone', async () => {
    const a = await writeSegment(store, 0, 9);
    const b = await writeSegment(store, 10, 19);
    await store.delete(b.key);
    const { yielded, error } = await collectUntilError(store, spec([a, b], 0, 20));
    expect(error).toBeInstanceOf(NotFoundError);
    expect(yielded.map((r) => r.offset)).toEqual(range(0, 10));
  });

  it('verifies several segments at once, reads them one at a time, and reports the first damage in offset order', async () => {
    const segs: SegmentRef[] = [];
    for (let first = 0; first < 100; first += 10) segs.push(await writeSegment(store, first, first + 9));
    const counting = new WatchedStore(store, { readDelayMs: 5 });
    expect(await verifyPrefix(counting, spec(segs, 0, 100))).toMatchObject({ segments: 10, messages: 100 });
    expect(counting.mostInFlight).toBe(VERIFY_READ_AHEAD);
    counting.mostInFlight = 0;
    expect((await collect(counting, spec(segs, 0, 100))).map((r) => r.offset)).toEqual(range(0, 100));
    expect(counting.mostInFlight).toBe(1);

    // Segment 3 is corrupt and 7 is missing; both are fetched at once, the error is segment 3's.
    const damaged = Buffer.from(await store.get(segs[3].key));
    damaged[damaged.length >> 1] ^= 0xff;
    await store.put(segs[3].key, damaged);
    await store.delete(segs[7].key);
    const error = await verifyPrefix(counting, spec(segs, 0, 100)).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(CorruptDataError);
    expect((error as CorruptDataError).key).toBe(segs[3].key);
    // A gap after a damaged segment: the damage comes first, as it does when reading.
    const gapped = spec([...segs.slice(0, 5), ...segs.slice(6)], 0, 100);
    expect(((await verifyPrefix(counting, gapped).catch((err: unknown) => err)) as CorruptDataError).key).toBe(segs[3].key);
  });

  it('reads across fence ranges without fetching anything for them, and resumes inside one', async () => {
    const fences = (first: number, last: number) =>
      fenceRangeRefOf(fenceRangeKey(VHOST, QUEUE, first, last), range(first, last + 1).map((o) => record(o, 100 + o)));
    const a = await writeSegment(store, 0, 9, { fences: { 9: 3 } });
    const idle = fences(10, 11);
    const b = await writeSegment(store, 12, 19);
    const tail = fences(20, 21);
    const watched = new WatchedStore(store);
    expect((await collect(watched, spec([a, idle, b, tail], 0, 22))).map((r) => r.offset)).toEqual(range(0, 20, [9, 10, 11]));
    expect(watched.gets).toEqual([a.key, b.key]);
    expect((await collect(watched, spec([a, idle, b, tail], 0, 22), 11)).map((r) => r.offset)).toEqual(range(12, 20));
    // A cut right after a fence range, and a prefix that is only fences.
    expect((await collect(store, spec([a, idle], 0, 12))).map((r) => r.offset)).toEqual(range(0, 9));
    expect(await verifyPrefix(store, spec([idle], 10, 12))).toEqual({ segments: 0, storedBytes: 0, messages: 0, bodyBytes: 0 });
    expect(await verifyPrefix(store, spec([a, idle, b, tail], 0, 22), { expectedMessages: 17 })).toMatchObject({ segments: 2, messages: 17 });
    // A fence range does not stand in for offsets it does not name.
    const late = await writeSegment(store, 16, 19);
    const { error } = await collectUntilError(store, spec([a, fences(10, 10), late], 0, 20));
    expect(error).toBeInstanceOf(CorruptDataError);
    expect((error as Error).message).toContain('11..15');
  });

  it('resumes from fromOffset, fetching only segments that still hold needed offsets', async () => {
    const segs = [
      await writeSegment(store, 0, 9),
      await writeSegment(store, 10, 19, { fences: { 12: 4 } }),
      await writeSegment(store, 20, 35, { fences: { 30: 5 } }),
    ];
    const counting = new WatchedStore(store);
    const got = await collect(counting, spec(segs, 0, 30), 17);
    expect(got.map((r) => r.offset)).toEqual(range(17, 30));
    expect(counting.gets).toEqual([segs[1].key, segs[2].key]);
    // A resume point before the start is clamped to the start; at the cut there is nothing left.
    expect((await collect(store, spec(segs, 5, 30), 2)).map((r) => r.offset)).toEqual(range(5, 30, [12]));
    expect(await collect(store, spec(segs, 0, 30), 30)).toEqual([]);
  });

  it('resuming after a fence offset continues with the next data record', async () => {
    const seg = await writeSegment(store, 0, 19, { fences: { 12: 4 } });
    expect((await collect(store, spec([seg], 0, 20), 12)).map((r) => r.offset)).toEqual(range(13, 20));
  });

  it('a resumed read plus the part before it equals the whole read', async () => {
    const segs = [await writeSegment(store, 0, 9), await writeSegment(store, 5, 24, { version: 'v2', fences: { 11: 3 } })];
    const whole = await collect(store, spec(segs, 0, 25));
    const head = whole.filter((r) => r.offset < 13);
    const tail = await collect(store, spec(segs, 0, 25), 13);
    expect([...head, ...tail]).toEqual(whole);
  });
});

// ---------------------------------------------------------------------------------------------
// Catalog
// ---------------------------------------------------------------------------------------------

function manifest(epoch: number, queues: QueueCheckpoint[], over: Partial<CheckpointManifest> = {}): CheckpointManifest {
  return {
    formatVersion: 1,
    roundId: `round-${epoch}`,
    epoch,
    parentEpoch: 0,
    full: queues.every((q) => q.baseEpoch === 0),
    startedAtMs: epoch * 1_000 - 500,
    committedAtMs: epoch * 1_000,
    leaderToken: 3,
    coordinatorId: 'coord-1',
    fences: [{ vhost: VHOST, exchange: 'tidemark.fence', publishedAtMs: epoch * 1_000 - 400 }],
    exchanges: [],
    queues,
    messages: queues.reduce((n, q) => n + q.messages, 0),
    bodyBytes: queues.reduce((n, q) => n + q.bodyBytes, 0),
    ...over,
  };
}

function entry(segments: SegmentRef[], startOffset: number, cutOffset: number, baseEpoch: number, name = QUEUE, vhost = VHOST): QueueCheckpoint {
  return {
    definition: { vhost, name, type: 'classic', durable: true, autoDelete: false, arguments: undefined, bindings: [] },
    journal: `tidemark.journal.${name}`,
    startOffset,
    cutOffset,
    messages: cutOffset - startOffset,
    bodyBytes: 0,
    segments,
    baseEpoch,
    workerId: 'worker-1',
    incomplete: [],
    headOffset: 0, headMessages: 0, possiblyAcked: 0, headBasis: '', predating: 0, outsideCut: undefined, historyOffset: 0, historyMessages: 0, headKnown: false,
  };
}

async function prefixOf(catalog: Catalog, e: QueueCheckpoint): Promise<JournalRecord[]> {
  return collect(store, { vhost: e.definition!.vhost, queue: e.definition!.name, startOffset: e.startOffset, cutOffset: e.cutOffset, segments: await catalog.segmentsOf(e) });
}

describe('catalog', () => {
  it('publishes a manifest that a fresh catalog reads back identically', async () => {
    const seg = await writeSegment(store, 0, 9);
    const m = manifest(7, [entry([seg], 0, 9, 0)]);
    await new Catalog(store).publish(m);
    expect(await store.has(checkpointKey(7))).toBe(true);
    expect(await new Catalog(store).get(7)).toEqual(m);
  });

  it('lists epochs ascending and knows the latest; an empty store has none', async () => {
    const catalog = new Catalog(store);
    expect(await catalog.epochs()).toEqual([]);
    expect(await catalog.latestEpoch()).toBe(0);
    for (const e of [7, 2, 11, 100]) await catalog.publish(manifest(e, []));
    // Things under checkpoints/ that are not manifests are not checkpoints.
    await store.put('checkpoints/README', Buffer.from('hello'));
    await store.put('checkpoints/00000000000000000005.manifest.tmp', Buffer.from('x'));
    const fresh = new Catalog(store);
    expect(await fresh.epochs()).toEqual([2, 7, 11, 100]);
    expect(await fresh.latestEpoch()).toBe(100);
  });

  it('get of a missing epoch is a NotFoundError', async () => {
    await expect(new Catalog(store).get(3)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('resolves "latest", an epoch number, and rejects anything else', async () => {
    const catalog = new Catalog(store);
    await expect(catalog.resolve('latest')).rejects.toThrow(/no checkpoint exists yet/);
    await expect(catalog.resolve('latest')).rejects.toBeInstanceOf(NotFoundError);
    for (const e of [3, 7, 9]) await catalog.publish(manifest(e, []));
    const fresh = new Catalog(store);
    expect((await fresh.resolve('latest')).epoch).toBe(9);
    expect((await fresh.resolve(' LATEST ')).epoch).toBe(9);
    expect((await fresh.resolve('7')).epoch).toBe(7);
    expect((await fresh.resolve('007')).epoch).toBe(7);
    await expect(fresh.resolve('8')).rejects.toBeInstanceOf(NotFoundError);
    for (const bad of ['abc', '-1', '7.0', '1e3', 'latest7']) {
      const err = await fresh.resolve(bad).catch((e: unknown) => e);
      expect(err, bad).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toContain(`"${bad}"`);
    }
  });

  it('at(time) picks the latest checkpoint committed at or before the time', async () => {
    const catalog = new Catalog(store);
    await expect(catalog.at(5_000)).rejects.toBeInstanceOf(NotFoundError);
    // Committed at 1000, 2000, 3000.
    for (const e of [1, 2, 3]) await catalog.publish(manifest(e, []));
    const fresh = new Catalog(store);
    expect((await fresh.at(2_500)).epoch).toBe(2);
    expect((await fresh.at(2_000)).epoch).toBe(2);
    expect((await fresh.at(1_999)).epoch).toBe(1);
    expect((await fresh.at(1e12)).epoch).toBe(3);
    await expect(fresh.at(999)).rejects.toBeInstanceOf(NotFoundError);
  });

  describe('incremental chains', () => {
    /**
     * Three checkpoints of one queue, each building on the last:
     *   E1 full:         [0, 12)  segments 0..14 (straddles the cut; fence 1 at 12)
     *   E2 base 1:       [0, 25)  segments 0..14 again (the straddler) and 15..29 (fence 2 at 25)
     *   E3 base 2:       [0, 40)  segments 30..44 (fence 3 at 40)
     * plus a second queue that is full in every checkpoint.
     */
    async function threeCheckpoints() {
      const s1 = await writeSegment(store, 0, 14, { fences: { 12: 1 } });
      const s2 = await writeSegment(store, 15, 29, { fences: { 25: 2 } });
      const s3 = await writeSegment(store, 30, 44, { fences: { 40: 3 } });
      const other = await writeSegment(store, 0, 4, { queue: 'other' });
      const otherEntry = entry([other], 0, 5, 0, 'other');
      const catalog = new Catalog(store);
      await catalog.publish(manifest(1, [entry([s1], 0, 12, 0), otherEntry]));
      await catalog.publish(manifest(2, [entry([s1, s2], 0, 25, 1), otherEntry], { parentEpoch: 1 }));
      const e3 = entry([s3], 0, 40, 2);
      await catalog.publish(manifest(3, [otherEntry, e3], { parentEpoch: 2 }));
      return { s1, s2, s3, e3, fresh: new Catalog(store) };
    }

    it('segmentsOf follows base epochs down to a full entry, each segment once, in offset order', async () => {
      const { s1, s2, s3, e3, fresh } = await threeCheckpoints();
      expect(await fresh.segmentsOf(e3)).toEqual([s1, s2, s3]);
      // A full entry needs only its own segments.
      const e1 = (await fresh.get(1)).queues[0];
      expect(await fresh.segmentsOf(e1)).toEqual([s1]);
    });

    it('reading the chain gives the exact prefix of the newest checkpoint', async () => {
      const { e3, fresh } = await threeCheckpoints();
      const got = await prefixOf(fresh, e3);
      expect(got.map((r) => r.offset)).toEqual(range(0, 40, [12, 25]));
      for (const r of got) expect(r.body.toString()).toBe(bodyOf(r.offset));
      // And each older checkpoint still reads back its own, shorter prefix.
      const e2 = (await fresh.get(2)).queues[0];
      expect((await prefixOf(fresh, e2)).map((r) => r.offset)).toEqual(range(0, 25, [12]));
    });

    it('consolidate makes every entry base 0 and reads back the same prefix', async () => {
      const { fresh } = await threeCheckpoints();
      const m3 = await fresh.get(3);
      const full = await fresh.consolidate(m3);
      expect(full.full).toBe(true);
      expect(full.epoch).toBe(3);
      expect(full.queues.map((q) => q.baseEpoch)).toEqual([0, 0]);
      expect(full.queues.map((q) => q.definition!.name)).toEqual(m3.queues.map((q) => q.definition!.name));
      for (let i = 0; i < m3.queues.length; i++) {
        const chained = await prefixOf(fresh, m3.queues[i]);
        const consolidated = await collect(store, {
          vhost: full.queues[i].definition!.vhost,
          queue: full.queues[i].definition!.name,
          startOffset: full.queues[i].startOffset,
          cutOffset: full.queues[i].cutOffset,
          // Only the entry's own segments: no chain may be needed any more.
          segments: full.queues[i].segments,
        });
        expect(consolidated).toEqual(chained);
        expect(consolidated.length).toBeGreaterThan(0);
      }
      // Publishing the consolidated form keeps it readable on its own (no base to follow).
      await fresh.publish({ ...full, epoch: 4 });
      const reread = new Catalog(store);
      const e4 = (await reread.get(4)).queues.find((q) => q.definition!.name === QUEUE)!;
      expect(await reread.segmentsOf(e4)).toEqual(e4.segments);
    });

    it('consolidate leaves out segments that hold nothing of the prefix', async () => {
      const before = await writeSegment(store, 0, 9);
      const inside = await writeSegment(store, 10, 19);
      const after = await writeSegment(store, 20, 29);
      const catalog = new Catalog(store);
      const m = manifest(1, [entry([before, inside, after], 10, 20, 0)]);
      const full = await catalog.consolidate(m);
      expect(full.queues[0].segments).toEqual([inside]);
    });

    it('refuses a chain link that lost the queue with a NotFoundError naming the link and the queue', async () => {
      const s1 = await writeSegment(store, 0, 9);
      const s2 = await writeSegment(store, 10, 19);
      const catalog = new Catalog(store);
      await catalog.publish(manifest(1, [entry([s1], 0, 10, 0)]));
      // Checkpoint 2 exists but has no entry for the queue.
      await catalog.publish(manifest(2, [entry([await writeSegment(store, 0, 4, { queue: 'other' })], 0, 5, 0, 'other')]));
      const e3 = entry([s2], 0, 20, 2);
      await catalog.publish(manifest(3, [e3]));
      const fresh = new Catalog(store);
      const err = await fresh.segmentsOf(e3).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NotFoundError);
      expect((err as Error).message).toContain('checkpoint 2');
      expect((err as Error).message).toContain(`${VHOST}/${QUEUE}`);
      await expect(fresh.consolidate(await fresh.get(3))).rejects.toBeInstanceOf(NotFoundError);
    });

    it('does not take a same-named queue of another vhost as the chain link', async () => {
      const s1 = await writeSegment(store, 0, 9, { vhost: 'prod' });
      const s2 = await writeSegment(store, 10, 19);
      const catalog = new Catalog(store);
      await catalog.publish(manifest(1, [entry([s1], 0, 10, 0, QUEUE, 'prod')]));
      const e2 = entry([s2], 0, 20, 1);
      await expect(catalog.segmentsOf(e2)).rejects.toBeInstanceOf(NotFoundError);
    });

    it('refuses a chain whose base checkpoint does not exist', async () => {
      const s2 = await writeSegment(store, 10, 19);
      await expect(new Catalog(store).segmentsOf(entry([s2], 0, 20, 5))).rejects.toBeInstanceOf(NotFoundError);
    });

    it('refuses a chain that loops instead of hanging', async () => {
      const s = await writeSegment(store, 0, 9);
      const catalog = new Catalog(store);
      await catalog.publish(manifest(6, [entry([s], 0, 10, 6)]));
      await expect(catalog.segmentsOf(entry([s], 0, 10, 6))).rejects.toThrow(/loops at checkpoint 6/);
    });
  });
});
