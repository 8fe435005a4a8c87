/**
 * verifyPrefix: the pass a restore runs over a queue's segments before it publishes anything of
 * that queue. It must find every kind of damage readPrefix would stumble on mid-publish — and
 * name the segment — while holding one segment at a time.
 */
import { WatchedStore } from '../helpers/watched-store.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CorruptDataError, IncompletePrefixError, ObjectNotFoundError } from '../../services/core/errors.js';
import { encodeSegment, gzipCodec, segmentRefOf, sha256Hex } from '../../services/core/format/segment-codec.js';
import { readPrefix, verifyPrefix, type PrefixSpec } from '../../services/core/format/segment-reader.js';
import { segmentKey } from '../../services/core/store/keys.js';
import { LocalStore } from '../../services/core/store/local-store.js';
import type { ObjectStore } from '../../services/core/store/object-store.js';
import { Segment, type Record as JournalRecord, type SegmentRef } from '../../services/gen/tidemark/v1/store.js';

const VHOST = 'prod';
const QUEUE = 'orders';

let dir: string;
let store: LocalStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tidemark-verify-'));
  store = new LocalStore(dir, { fsync: false });
  await store.init();
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function record(offset: number, fenceEpoch = 0): JournalRecord {
  return {
    offset,
    exchange: fenceEpoch ? 'tidemark.fence' : 'orders',
    routingKey: 'eu',
    properties: undefined,
    body: Buffer.from(fenceEpoch ? `fence ${fenceEpoch}` : `message ${offset}`),
    captureTimeMs: 1_700_000_000_000 + offset,
    fenceEpoch,
  };
}

/** The ref of a stored segment that claims offsets first..last, whatever its records hold. */
function refOf(key: string, first: number, last: number, bytes: Buffer, records: JournalRecord[]): SegmentRef {
  return { ...segmentRefOf(key, records, bytes, sha256Hex(bytes), gzipCodec.name), firstOffset: first, lastOffset: last };
}

/** Writes a well-formed segment of offsets first..last; `fences` maps offset to fence epoch. */
async function writeSegment(first: number, last: number, fences: Record<number, number> = {}, queue = QUEUE): Promise<SegmentRef> {
  const records: JournalRecord[] = [];
  for (let offset = first; offset <= last; offset++) records.push(record(offset, fences[offset] ?? 0));
  const { bytes, sha256 } = await encodeSegment({ formatVersion: 1, vhost: VHOST, queue, journal: `j.${queue}`, firstOffset: first, lastOffset: last, records }, gzipCodec);
  const key = segmentKey(VHOST, queue, first, last, sha256);
  await store.put(key, bytes);
  return refOf(key, first, last, bytes, records);
}

/**
 * Writes a segment whose records are in the order given, bypassing the writer's contiguity check
 * (which would refuse it), with a ref whose checksum matches: damage only decoding can find.
 */
async function writeRawSegment(first: number, last: number, offsets: number[]): Promise<SegmentRef> {
  const records = offsets.map((offset) => record(offset));
  const segment: Segment = { formatVersion: 1, vhost: VHOST, queue: QUEUE, journal: `j.${QUEUE}`, firstOffset: first, lastOffset: last, records };
  const bytes = await promisify(gzip)(Buffer.from(Segment.encode(segment).finish()));
  const key = segmentKey(VHOST, QUEUE, first, last, sha256Hex(bytes));
  await store.put(key, bytes);
  return refOf(key, first, last, bytes, records);
}

function spec(segments: SegmentRef[], startOffset: number, cutOffset: number): PrefixSpec {
  return { vhost: VHOST, queue: QUEUE, startOffset, cutOffset, segments };
}

async function verifyError(s: ObjectStore, p: PrefixSpec, expectedMessages?: number): Promise<Error> {
  const err = await verifyPrefix(s, p, { expectedMessages }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'verifyPrefix should have failed').toBeInstanceOf(Error);
  return err as Error;
}


describe('verifyPrefix', () => {
  it('passes an intact prefix and counts its data messages, fences and records past the cut left out', async () => {
    const segs = [await writeSegment(0, 9), await writeSegment(10, 19, { 12: 4 }), await writeSegment(20, 29, { 25: 5 })];
    const found = await verifyPrefix(store, spec(segs, 0, 25), { expectedMessages: 24 });
    expect(found).toEqual({
      segments: 3,
      storedBytes: segs.reduce((n, s) => n + s.storedBytes, 0),
      messages: 24,
      bodyBytes: [...Array(25).keys()].filter((o) => o !== 12).reduce((n, o) => n + `message ${o}`.length, 0),
    });
  });

  it('reads each needed segment once, in offset order, whatever order the refs are listed in, and no segment past the cut', async () => {
    const a = await writeSegment(0, 9);
    const b = await writeSegment(10, 19);
    const c = await writeSegment(20, 29, { 25: 5 });
    const after = await writeSegment(30, 39);
    const watching = new WatchedStore(store);
    await verifyPrefix(watching, spec([after, c, a, b, a], 0, 25), { expectedMessages: 25 });
    expect(watching.gets).toEqual([a.key, b.key, c.key]);
  });

  it('names a segment whose bytes were flipped, before anything of it is used', async () => {
    const a = await writeSegment(0, 9);
    const b = await writeSegment(10, 19);
    const bytes = Buffer.from(await store.get(b.key));
    bytes[bytes.length >> 1] ^= 0xff;
    await store.put(b.key, bytes);
    const err = await verifyError(store, spec([a, b], 0, 20));
    expect(err).toBeInstanceOf(CorruptDataError);
    expect((err as CorruptDataError).key).toBe(b.key);
    expect(err.message).toContain(`segment ${b.key} is corrupt: checksum mismatch`);
  });

  it('names a segment whose object is gone', async () => {
    const a = await writeSegment(0, 9);
    const b = await writeSegment(10, 19);
    await store.delete(b.key);
    const err = await verifyError(store, spec([a, b], 0, 20));
    expect(err).toBeInstanceOf(ObjectNotFoundError);
    expect((err as ObjectNotFoundError).key).toBe(b.key);
    expect(err.message).toContain(b.key);
  });

  it('refuses a segment whose records are out of order, even with a matching checksum', async () => {
    const a = await writeSegment(0, 9);
    const swapped = await writeRawSegment(10, 14, [10, 12, 11, 13, 14]);
    const err = await verifyError(store, spec([a, swapped], 0, 15));
    expect(err).toBeInstanceOf(CorruptDataError);
    expect((err as CorruptDataError).key).toBe(swapped.key);
    expect(err.message).toContain('record 1 has offset 12, expected 11');
  });

  it('refuses a segment missing a record inside its range, or holding one twice', async () => {
    const holed = await writeRawSegment(0, 4, [0, 1, 3, 4]);
    expect((await verifyError(store, spec([holed], 0, 5))).message).toMatch(/offset gap: record 2 has offset 3, expected 2/);
    const doubled = await writeRawSegment(5, 8, [5, 6, 6, 7, 8]);
    expect((await verifyError(store, spec([doubled], 5, 9))).message).toMatch(/duplicate or out-of-order: record 2 has offset 6, expected 7/);
  });

  it('refuses a segment of another queue listed under this one', async () => {
    const foreign = await writeSegment(0, 9, {}, 'invoices');
    const err = await verifyError(store, spec([foreign], 0, 10));
    expect(err).toBeInstanceOf(CorruptDataError);
    expect(err.message).toContain(`holds records of ${VHOST}/invoices, not ${VHOST}/${QUEUE}`);
  });

  it('refuses offsets that no listed segment holds, saying which', async () => {
    const a = await writeSegment(0, 9);
    const c = await writeSegment(20, 29);
    const gap = await verifyError(store, spec([c, a], 0, 30));
    expect(gap).toBeInstanceOf(IncompletePrefixError);
    expect(gap).toMatchObject({ offset: 10, key: c.key });
    expect(gap.message).toContain('offsets 10..19 are in no segment');
    const short = await verifyError(store, spec([a], 0, 20));
    expect(short).toMatchObject({ offset: 10, key: '' });
    expect(short.message).toContain('ends at offset 10 but the cut is 20');
  });

  it('refuses segments that hold another number of messages than the checkpoint says', async () => {
    const a = await writeSegment(0, 9);
    const err = await verifyError(store, spec([a], 0, 10), 11);
    expect(err).toBeInstanceOf(CorruptDataError);
    expect(err.message).toContain('hold 10 message(s) in offsets 0..9, but the checkpoint says 11');
  });

  it('stops between segments when the signal aborts', async () => {
    const segs = [await writeSegment(0, 9), await writeSegment(10, 19)];
    const controller = new AbortController();
    const reason = new Error('restore cancelled');
    controller.abort(reason);
    await expect(verifyPrefix(store, spec(segs, 0, 20), { signal: controller.signal })).rejects.toBe(reason);
  });

  it('a segment replaced after verification still fails the second read by its checksum', async () => {
    const a = await writeSegment(0, 9);
    const b = await writeSegment(10, 19);
    await verifyPrefix(store, spec([a, b], 0, 20), { expectedMessages: 20 });
    await store.put(b.key, await store.get(a.key));
    const read: number[] = [];
    const err = await (async () => {
      for await (const r of readPrefix(store, spec([a, b], 0, 20))) read.push(r.offset);
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CorruptDataError);
    expect((err as CorruptDataError).key).toBe(b.key);
    expect(read).toEqual([...Array(10).keys()]);
  });
});
