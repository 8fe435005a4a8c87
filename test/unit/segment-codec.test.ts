import { describe, expect, it } from 'vitest';
import { Segment, type Record as JournalRecord } from '../../services/gen/tidemark/v1/store.js';
import { CorruptDataError, TidemarkError } from '../../services/core/errors.js';
import { randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { COMPRESS_SPEED_TTL_MS, createAdaptiveCodec, codecByName, decodeSegment, encodeSegment, gzipCodec, sha256Hex } from '../../services/core/format/segment-codec.js';
import { segmentKey } from '../../services/core/store/keys.js';

function record(offset: number, over: Partial<JournalRecord> = {}): JournalRecord {
  return {
    offset,
    exchange: 'orders',
    routingKey: `eu.${offset}`,
    properties: { contentType: 'text/plain', deliveryMode: 2, headers: { entries: [{ key: 'n', value: { kind: { $case: 'intValue', value: offset } } }] } },
    body: Buffer.from(`message ${offset}`),
    captureTimeMs: 1_700_000_000_000 + offset,
    fenceEpoch: 0,
    ...over,
  };
}

function segment(first: number, last: number, records = range(first, last).map((o) => record(o))): Segment {
  return { formatVersion: 1, vhost: '/', queue: 'orders.eu', journal: 'tidemark.journal.orders.eu', firstOffset: first, lastOffset: last, records };
}

function range(first: number, last: number): number[] {
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}

const KEY = 'segments/%2F/orders.eu/00000000000000000100-00000000000000000149-0123456789abcdef.seg';

describe('segment codec', () => {
  it('round-trips a segment through encode and decode', async () => {
    const seg = segment(100, 149);
    seg.records[10] = record(110, { fenceEpoch: 7, body: Buffer.alloc(0), properties: undefined });
    const { bytes, sha256 } = await encodeSegment(seg, gzipCodec);
    expect(sha256).toBe(sha256Hex(bytes));
    expect(sha256).toMatch(/^[0-9a-f]{64}$/);
    const back = await decodeSegment(bytes, { sha256, codec: 'gzip', key: KEY, firstOffset: 100, lastOffset: 149 });
    expect(back).toEqual(seg);
  });

  it('adaptive: gzip for bodies that compress, identity for ones that do not, both read back', async () => {
    const text = segment(0, 199, range(0, 199).map((o) => record(o, { body: Buffer.from(`{"order": ${o}, "status": "shipped", "items": []}`.repeat(8)) })));
    const random = segment(0, 199, range(0, 199).map((o) => record(o, { body: randomBytes(1024) })));
    for (const [seg, codec] of [[text, 'gzip'], [random, 'identity']] as const) {
      const encoded = await encodeSegment(seg, createAdaptiveCodec());
      expect(encoded.codec).toBe(codec);
      if (codec === 'identity') expect(encoded.bytes).toEqual(Buffer.from(Segment.encode(seg).finish()));
      else expect(encoded.bytes.length).toBeLessThan(Buffer.from(Segment.encode(seg).finish()).length / 4);
      const back = await decodeSegment(encoded.bytes, { sha256: encoded.sha256, codec: encoded.codec, key: KEY, firstOffset: 0, lastOffset: 199 });
      expect(back).toEqual(seg);
    }
  });

  it('adaptive: stores compressible segments as identity while gzip could not keep up with their flow, and gzip again once it can', async () => {
    let t = 0;
    const codec = createAdaptiveCodec(() => t);
    const text = Buffer.from('{"order": 1, "status": "shipped"} '.repeat(8_000)); // ~270 KB
    const pick = (afterMs: number) => {
      t += afterMs;
      return codec.pick(text);
    };
    /** Compresses with the picked codec while the clock moves on by `ms`: how long gzip took. */
    const compress = async (chosen: ReturnType<typeof pick>, ms: number) => {
      const done = chosen.compress(text);
      t += ms;
      return done;
    };
    // Nothing known yet: gzip, and its speed is measured (200 ms for this segment).
    let chosen = pick(1_000);
    expect(chosen.name).toBe('gzip');
    expect(gunzipSync(await compress(chosen, 200))).toEqual(text);
    // The next segment was cut 350 ms after this one (200 of them compressing it): compressing
    // it too would take more than half of that.
    chosen = pick(150);
    expect(chosen.name).toBe('identity');
    expect(await chosen.compress(text)).toBe(text);
    chosen = pick(100);
    expect(chosen.name).toBe('identity');
    // The flow slows down to one segment in 500 ms: 200 ms of gzip is within half of it.
    chosen = pick(500);
    expect(chosen.name).toBe('gzip');
    // gzip got faster (50 ms): the speed is the mean of 1/200 and 1/50 of the segment per ms,
    // so 80 ms are expected for the next one.
    await compress(chosen, 50);
    expect(pick(120).name).toBe('gzip'); // 170 ms since the last cut
    expect(pick(150).name).toBe('identity');
    // A speed older than its TTL is measured again, whatever the flow.
    t += COMPRESS_SPEED_TTL_MS;
    expect(pick(10).name).toBe('gzip');
    // Incompressible segments stay identity at any flow.
    const random = randomBytes(256 * 1024);
    t += 5_000;
    expect(codec.pick(random).name).toBe('identity');
  });

  it('is deterministic: the same segment gives the same bytes and checksum', async () => {
    const a = await encodeSegment(segment(0, 9), gzipCodec);
    const b = await encodeSegment(segment(0, 9), gzipCodec);
    expect(a.sha256).toBe(b.sha256);
  });

  it('rejects a flipped byte by checksum, naming the key and both checksums', async () => {
    const { bytes, sha256 } = await encodeSegment(segment(100, 149), gzipCodec);
    const damaged = Buffer.from(bytes);
    damaged[damaged.length >> 1] ^= 0x01;
    const err = await decodeSegment(damaged, { sha256, codec: 'gzip', key: KEY, firstOffset: 100, lastOffset: 149 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptDataError);
    expect((err as CorruptDataError).key).toBe(KEY);
    expect((err as Error).message).toContain(KEY);
    expect((err as Error).message).toContain(`expected sha256 ${sha256}`);
    expect((err as Error).message).toContain(sha256Hex(damaged));
  });

  it('reports bytes that pass the checksum but do not decompress', async () => {
    const junk = Buffer.from('not gzip at all');
    const err = await decodeSegment(junk, { sha256: sha256Hex(junk), codec: 'gzip', key: KEY, firstOffset: 0, lastOffset: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptDataError);
    expect((err as Error).message).toMatch(/gzip decompression failed/);
  });

  it('reports bytes that decompress but are not a segment', async () => {
    const bytes = await gzipCodec.compress(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]));
    const err = await decodeSegment(bytes, { sha256: sha256Hex(bytes), codec: 'gzip', key: KEY, firstOffset: 0, lastOffset: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptDataError);
    expect((err as Error).message).toMatch(/protobuf decode failed/);
  });

  it('detects a gap in the record offsets', async () => {
    // Written by a buggy or older writer: encodeSegment itself refuses gaps, so forge the bytes.
    const recs = range(100, 105).filter((o) => o !== 103).map((o) => record(o));
    const bytes = await forge(segment(100, 105, recs));
    const err = await decodeSegment(bytes, { sha256: sha256Hex(bytes), codec: 'gzip', key: KEY, firstOffset: 100, lastOffset: 105 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptDataError);
    expect((err as Error).message).toMatch(/offset gap: record 3 has offset 104, expected 103/);
    expect((err as Error).message).toContain(KEY);
  });

  it('detects duplicates, missing tail records and a range other than the manifest says', async () => {
    const dup = await forge(segment(0, 2, [record(0), record(1), record(1)]));
    await expect(decodeSegment(dup, { sha256: sha256Hex(dup), codec: 'gzip', key: KEY, firstOffset: 0, lastOffset: 2 })).rejects.toThrow(/duplicate/);
    const short = await forge(segment(0, 2, [record(0), record(1)]));
    await expect(decodeSegment(short, { sha256: sha256Hex(short), codec: 'gzip', key: KEY, firstOffset: 0, lastOffset: 2 })).rejects.toThrow(/2 records for offsets 0..2/);
    const { bytes, sha256 } = await encodeSegment(segment(0, 2), gzipCodec);
    await expect(decodeSegment(bytes, { sha256, codec: 'gzip', key: KEY, firstOffset: 0, lastOffset: 3 })).rejects.toThrow(/offset range is 0..2, expected 0..3/);
  });

  it('refuses to write a segment with a gap', async () => {
    await expect(encodeSegment(segment(0, 2, [record(0), record(2)]), gzipCodec)).rejects.toThrow(TidemarkError);
  });

  it('names an unknown codec', async () => {
    expect(() => codecByName('zstd')).toThrow(/unknown segment codec "zstd"; known codecs: gzip/);
    const { bytes, sha256 } = await encodeSegment(segment(0, 0), gzipCodec);
    await expect(decodeSegment(bytes, { sha256, codec: 'zstd', key: KEY, firstOffset: 0, lastOffset: 0 })).rejects.toBeInstanceOf(CorruptDataError);
  });
});

describe('segment keys', () => {
  const sha = 'ab'.repeat(32);

  it('lays out vhost, queue, zero-padded offsets and a checksum prefix', () => {
    expect(segmentKey('/', 'orders.eu', 0, 1234, sha)).toBe(
      'segments/%2F/orders.eu/00000000000000000000-00000000000000001234-abababababababab.seg',
    );
  });

  it('encodes names so each is one path segment', () => {
    expect(segmentKey('prod/eu', 'a b/c?d', 5, 6, sha)).toBe(
      'segments/prod%2Feu/a%20b%2Fc%3Fd/00000000000000000005-00000000000000000006-abababababababab.seg',
    );
    expect(segmentKey('..', '.', 1, 1, sha)).toMatch(/^segments\/%2E%2E\/%2E\//);
  });

  it('sorts numerically by first offset', () => {
    const keys = [segmentKey('/', 'q', 1000, 1999, sha), segmentKey('/', 'q', 2, 999, sha), segmentKey('/', 'q', 0, 1, sha)];
    expect([...keys].sort()).toEqual([keys[2], keys[1], keys[0]]);
  });

  it('refuses negative or fractional offsets', () => {
    expect(() => segmentKey('/', 'q', -1, 1, sha)).toThrow(TidemarkError);
    expect(() => segmentKey('/', 'q', 1.5, 2, sha)).toThrow(TidemarkError);
  });
});

/** Encode without encodeSegment's checks, as a faulty writer would. */
function forge(seg: Segment): Promise<Buffer> {
  return gzipCodec.compress(Buffer.from(Segment.encode(seg).finish()));
}
