/**
 * Segment objects: a Segment message, protobuf-encoded, compressed by a codec, checksummed over
 * the stored bytes. Reading verifies before trusting: checksum first (nothing is decompressed from
 * a damaged object), then decoding, then that the records are exactly the promised contiguous
 * offsets, so a restore never replays a gap or a duplicate (G2).
 */
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { constants as zlibConstants, gunzip, gzip, gzipSync } from 'node:zlib';
import { Segment, type Record as JournalRecord, type SegmentRef } from '../gen/tidemark/v1/store.js';
import { ConfigError, CorruptDataError, TidemarkError, errorMessage } from './errors.js';

/** Segment format version this code writes and the newest it reads. */
export const SEGMENT_FORMAT_VERSION = 1;

/** How segment bytes are compressed in the store. The name is recorded in each SegmentRef. */
export interface SegmentCodec {
  /** Stable name stored in manifests, e.g. `gzip`. */
  readonly name: string;
  compress(b: Buffer): Promise<Buffer>;
  decompress(b: Buffer): Promise<Buffer>;
}

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/**
 * gzip, the codec of format version 1. Written at zlib's fastest level: on the capture path the
 * compression of a 4 MiB segment is what a queue waits for, and level 1 is about three times
 * faster than the default for about twice the (already tiny) size on typical payloads. Any gzip
 * level reads back the same way.
 */
export const gzipCodec: SegmentCodec = {
  name: 'gzip',
  compress: (b) => gzipAsync(b, { level: zlibConstants.Z_BEST_SPEED }),
  decompress: (b) => gunzipAsync(b),
};

/** No compression: the stored bytes are the encoded segment. For payloads gzip cannot shrink. */
export const identityCodec: SegmentCodec = {
  name: 'identity',
  compress: async (b) => b,
  decompress: async (b) => b,
};

/** A codec that picks gzip or identity per segment from a sample of its bytes. */
export interface AdaptiveCodec {
  readonly name: 'auto';
  pick(encoded: Buffer): SegmentCodec;
}

/** Bytes of an encoded segment compressed to judge it. */
const SAMPLE_BYTES = 16 * 1024;

/**
 * gzip when it pays, identity when it does not: a segment whose sample (taken from its middle,
 * past the headers) does not shrink by at least a tenth is stored uncompressed. Random or already
 * compressed bodies cost gzip ~30 ms per MiB and save nothing.
 */
export const adaptiveCodec: AdaptiveCodec = {
  name: 'auto',
  pick(encoded) {
    if (encoded.length <= SAMPLE_BYTES) return gzipCodec;
    const start = Math.floor((encoded.length - SAMPLE_BYTES) / 2);
    const sample = encoded.subarray(start, start + SAMPLE_BYTES);
    const packed = gzipSync(sample, { level: zlibConstants.Z_BEST_SPEED });
    return packed.length <= sample.length * 0.9 ? gzipCodec : identityCodec;
  },
};

const codecs: ReadonlyMap<string, SegmentCodec> = new Map([
  [gzipCodec.name, gzipCodec],
  [identityCodec.name, identityCodec],
]);

/** The codec a SegmentRef names; throws ConfigError for an unknown name. */
export function codecByName(name: string): SegmentCodec {
  const codec = codecs.get(name);
  if (!codec) {
    throw new ConfigError(`unknown segment codec "${name}"; known codecs: ${[...codecs.keys()].join(', ')}`);
  }
  return codec;
}

/** Lowercase hex sha256 of bytes. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Encode and compress a segment. Refuses a segment whose records are not exactly
 * first_offset..last_offset: such an object could never be read back.
 */
export async function encodeSegment(segment: Segment, codec: SegmentCodec | AdaptiveCodec): Promise<{ bytes: Buffer; sha256: string; codec: string }> {
  const problem = contiguityProblem(segment, segment.firstOffset, segment.lastOffset);
  if (problem) throw new TidemarkError(`refusing to write segment of ${segment.vhost}/${segment.queue}: ${problem}`);
  const encoded = Buffer.from(Segment.encode(segment).finish());
  const chosen = 'pick' in codec ? codec.pick(encoded) : codec;
  const bytes = await chosen.compress(encoded);
  return { bytes, sha256: sha256Hex(bytes), codec: chosen.name };
}

/** The manifest's reference to a stored segment of `records` (fences counted as records, not messages). */
export function segmentRefOf(key: string, records: JournalRecord[], stored: Buffer, sha256: string, codec: string): SegmentRef {
  let messages = 0;
  let bodyBytes = 0;
  for (const r of records) {
    if (r.fenceEpoch === 0) {
      messages += 1;
      bodyBytes += r.body.length;
    }
  }
  return {
    key,
    firstOffset: records[0].offset,
    lastOffset: records[records.length - 1].offset,
    records: records.length,
    messages,
    storedBytes: stored.length,
    bodyBytes,
    sha256,
    codec,
  };
}

/** What a SegmentRef promises about a stored segment. */
export interface ExpectedSegment {
  sha256: string;
  codec: string;
  key: string;
  firstOffset: number;
  lastOffset: number;
}

/** Verify and decode a stored segment; any failure throws CorruptDataError naming the key. */
export async function decodeSegment(bytes: Buffer, expected: ExpectedSegment): Promise<Segment> {
  const { key } = expected;
  const corrupt = (what: string, cause?: unknown) =>
    new CorruptDataError(`segment ${key} is corrupt: ${what}; nothing from it was used`, key, { cause });

  const actual = sha256Hex(bytes);
  if (actual !== expected.sha256.toLowerCase()) {
    throw corrupt(`checksum mismatch: expected sha256 ${expected.sha256}, stored object has ${actual}`);
  }
  let codec: SegmentCodec;
  try {
    codec = codecByName(expected.codec);
  } catch (err) {
    throw corrupt(errorMessage(err), err);
  }
  let plain: Buffer;
  try {
    plain = await codec.decompress(bytes);
  } catch (err) {
    throw corrupt(`${codec.name} decompression failed: ${errorMessage(err)}`, err);
  }
  let segment: Segment;
  try {
    segment = Segment.decode(plain);
  } catch (err) {
    throw corrupt(`protobuf decode failed: ${errorMessage(err)}`, err);
  }
  if (segment.formatVersion > SEGMENT_FORMAT_VERSION) {
    throw corrupt(`format version ${segment.formatVersion} is newer than this Tidemark reads (${SEGMENT_FORMAT_VERSION}); upgrade Tidemark`);
  }
  const problem = contiguityProblem(segment, expected.firstOffset, expected.lastOffset);
  if (problem) throw corrupt(problem);
  return segment;
}

/** Why the segment's records are not exactly first..last, or undefined if they are. */
function contiguityProblem(segment: Segment, first: number, last: number): string | undefined {
  if (segment.firstOffset !== first || segment.lastOffset !== last) {
    return `offset range is ${segment.firstOffset}..${segment.lastOffset}, expected ${first}..${last}`;
  }
  if (last < first) return `empty offset range ${first}..${last}`;
  const want = last - first + 1;
  for (let i = 0; i < segment.records.length; i++) {
    const offset = segment.records[i].offset;
    if (offset !== first + i) {
      const kind = offset < first + i ? 'duplicate or out-of-order' : 'offset gap';
      return `${kind}: record ${i} has offset ${offset}, expected ${first + i}`;
    }
  }
  if (segment.records.length !== want) {
    return `offset gap: ${segment.records.length} records for offsets ${first}..${last} (${want} expected)`;
  }
  return undefined;
}
