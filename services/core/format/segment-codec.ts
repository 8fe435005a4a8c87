/**
 * Segment objects: a Segment message, protobuf-encoded, compressed by a codec, checksummed over
 * the stored bytes. Reading verifies before trusting: checksum first (nothing is decompressed from
 * a damaged object), then decoding, then that the records are exactly the promised contiguous
 * offsets, so a restore never replays a gap or a duplicate (G2).
 */
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { constants as zlibConstants, gunzip, gzip, gzipSync } from 'node:zlib';
import { Segment, type Record as JournalRecord, type SegmentRef } from '../../gen/tidemark/v1/store.js';
import { ConfigError, CorruptDataError, FormatError, OversizedObjectError, errorMessage } from '../errors.js';
import { isSealed, requireVault, type Vault } from '../crypto/vault.js';

/** Segment format version this code writes and the newest it reads. */
export const SEGMENT_FORMAT_VERSION = 1;

/** How segment bytes are compressed in the store. The name is recorded in each SegmentRef. */
export interface SegmentCodec {
  /** Stable name stored in manifests, e.g. `gzip`. */
  readonly name: string;
  compress(b: Buffer): Promise<Buffer>;
  /** Rejects (ERR_BUFFER_TOO_LARGE) rather than produce more than `maxBytes`. @default no limit */
  decompress(b: Buffer, maxBytes?: number): Promise<Buffer>;
}

/** A decompression's output was cut off at its limit (see {@link decompressBounded}). */
function tooLarge(): Error {
  return Object.assign(new RangeError('output exceeds its limit'), { code: 'ERR_BUFFER_TOO_LARGE' });
}

/**
 * Decompresses with an output limit; a larger output (a decompression bomb, or a ref that lies
 * about its records) throws OversizedObjectError naming the object, before memory runs out.
 */
export async function decompressBounded(codec: SegmentCodec, b: Buffer, maxBytes: number, what: string, key: string): Promise<Buffer> {
  try {
    return await codec.decompress(b, maxBytes);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new OversizedObjectError(`${what} ${key} decompresses to more than ${maxBytes} bytes, more than it can hold: it was not used (damaged, or planted to exhaust memory)`, key, { cause: err });
    }
    throw err;
  }
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
  decompress: (b, maxBytes) => gunzipAsync(b, maxBytes === undefined ? {} : { maxOutputLength: Math.max(1, maxBytes) }),
};

/** No compression: the stored bytes are the encoded segment. For payloads gzip cannot shrink. */
export const identityCodec: SegmentCodec = {
  name: 'identity',
  compress: async (b) => b,
  decompress: async (b, maxBytes) => {
    if (maxBytes !== undefined && b.length > maxBytes) throw tooLarge();
    return b;
  },
};

/** A codec that picks gzip or identity per segment. */
export interface AdaptiveCodec {
  readonly name: 'auto';
  pick(encoded: Buffer): SegmentCodec;
}

/** How a worker stores segments (config `segmentCodec`). */
export const SEGMENT_CODEC_CHOICES = ['auto', 'gzip', 'identity'] as const;
export type SegmentCodecChoice = (typeof SEGMENT_CODEC_CHOICES)[number];

/** Bytes of an encoded segment compressed to judge it. */
const SAMPLE_BYTES = 16 * 1024;
/** The most of its time a capture's flush chain may spend compressing before `auto` stops. */
export const MAX_COMPRESS_SHARE = 0.5;
/** How long `auto` trusts a compression speed it measured before it measures again. */
export const COMPRESS_SPEED_TTL_MS = 60_000;
/** Smaller inputs are compressed without timing: a fixed per-call cost would dominate. */
const MEASURE_MIN_BYTES = 64 * 1024;

/**
 * `auto`, the worker's default: gzip when it pays and keeps up, identity otherwise. One per
 * capture, because it measures that queue's flow.
 *
 * - It pays: a 16 KiB sample from the segment's middle (past the headers), gzipped, must shrink
 *   by at least a tenth. Random, encrypted or already compressed bodies cost gzip ~30 ms per MiB
 *   and save nothing.
 * - It keeps up: segments are written one after another, so a queue whose records arrive faster
 *   than gzip compresses them would fall behind its journal by more every second. The codec
 *   knows how fast gzip last ran (bytes per ms, measured on this capture's own segments) and how
 *   fast this segment's bytes arrived (its size over the time since the previous pick). When
 *   compressing would take more than MAX_COMPRESS_SHARE of the time the next segment takes to
 *   arrive, the segment is stored as identity. Storage then costs more, but the backup keeps up
 *   with the broker; once the flow slows down, gzip comes back. A speed older than
 *   COMPRESS_SPEED_TTL_MS is measured again on the next compressible segment (of 64 KiB or more:
 *   on smaller ones a fixed per-call cost hides the speed).
 */
export function createAdaptiveCodec(now: () => number = () => performance.now()): AdaptiveCodec {
  let previousPickAt: number | undefined;
  let gzipBytesPerMs: number | undefined;
  let measuredAt = -Infinity;
  const measuredGzip: SegmentCodec = {
    name: gzipCodec.name,
    async compress(b) {
      const started = now();
      const out = await gzipCodec.compress(b);
      if (b.length < MEASURE_MIN_BYTES) return out;
      const ms = Math.max(now() - started, 0.001);
      // Weighted toward the newest: the speed depends on the payload and on the machine's load.
      gzipBytesPerMs = gzipBytesPerMs === undefined ? b.length / ms : 0.5 * gzipBytesPerMs + 0.5 * (b.length / ms);
      measuredAt = now();
      return out;
    },
    decompress: gzipCodec.decompress,
  };
  return {
    name: 'auto',
    pick(encoded) {
      const at = now();
      const sinceLast = previousPickAt === undefined ? undefined : at - previousPickAt;
      previousPickAt = at;
      if (!compresses(encoded)) return identityCodec;
      if (gzipBytesPerMs === undefined || sinceLast === undefined || at - measuredAt > COMPRESS_SPEED_TTL_MS) return measuredGzip;
      const compressMs = encoded.length / gzipBytesPerMs;
      return compressMs > MAX_COMPRESS_SHARE * sinceLast ? identityCodec : measuredGzip;
    },
  };
}

/** Whether a sample of the encoded segment shrinks by at least a tenth under gzip. */
function compresses(encoded: Buffer): boolean {
  if (encoded.length <= SAMPLE_BYTES) return true;
  const start = Math.floor((encoded.length - SAMPLE_BYTES) / 2);
  const sample = encoded.subarray(start, start + SAMPLE_BYTES);
  const packed = gzipSync(sample, { level: zlibConstants.Z_BEST_SPEED });
  return packed.length <= sample.length * 0.9;
}

/** The codec a capture uses for a configured choice; `auto` gets a fresh adaptive codec. */
export function captureCodec(choice: SegmentCodecChoice): SegmentCodec | AdaptiveCodec {
  if (choice === 'gzip') return gzipCodec;
  if (choice === 'identity') return identityCodec;
  return createAdaptiveCodec();
}

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
export async function encodeSegment(segment: Segment, codec: SegmentCodec | AdaptiveCodec, vault?: Vault): Promise<{ bytes: Buffer; sha256: string; codec: string }> {
  const problem = contiguityProblem(segment, segment.firstOffset, segment.lastOffset);
  if (problem) throw new FormatError(`refusing to write segment of ${segment.vhost}/${segment.queue}: ${problem}`);
  const encoded = Buffer.from(Segment.encode(segment).finish());
  const chosen = 'pick' in codec ? codec.pick(encoded) : codec;
  const compressed = await chosen.compress(encoded);
  // Sealed after compression (ciphertext does not compress); the checksum covers the stored bytes.
  const bytes = vault ? await vault.seal(compressed, 'segment') : compressed;
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

/**
 * The codec name of a fence range: a SegmentRef for offsets that hold only fences, for which no
 * object is stored. A reader needs every offset below a cut in some ref, but a fence's content
 * is never restored (a resume reads its own fence from the journal), so an idle queue's fences
 * cost a round no store write.
 */
export const FENCE_RANGE_CODEC = 'fences';

/** Whether a ref is a fence range (no object behind it) rather than a stored segment. */
export function isFenceRange(ref: Pick<SegmentRef, 'codec'>): boolean {
  return ref.codec === FENCE_RANGE_CODEC;
}

/** How many of `refs` are stored segments (objects), fence ranges left out: what the CLI counts. */
export function storedSegmentCount(refs: ReadonlyArray<Pick<SegmentRef, 'codec'>>): number {
  return refs.filter((ref) => !isFenceRange(ref)).length;
}

/** The ref of a fence range over `records`, which must all be fences, at contiguous offsets. */
export function fenceRangeRefOf(key: string, records: JournalRecord[]): SegmentRef {
  return {
    key,
    firstOffset: records[0].offset,
    lastOffset: records[records.length - 1].offset,
    records: records.length,
    messages: 0,
    storedBytes: 0,
    bodyBytes: 0,
    sha256: '',
    codec: FENCE_RANGE_CODEC,
  };
}

/** What a SegmentRef promises about a stored segment. */
export interface ExpectedSegment {
  sha256: string;
  codec: string;
  key: string;
  firstOffset: number;
  lastOffset: number;
  /** Records the ref promises (fences included): bounds the decompressed size. @default unknown */
  records?: number;
  /** Body bytes the ref promises: bounds the decompressed size. @default unknown */
  bodyBytes?: number;
}

/** The most a segment may decompress to, whatever its ref says. */
export const MAX_SEGMENT_DECODED_BYTES = 1024 ** 3;
/**
 * What one record may take besides its body once decoded: AMQP properties and headers fit in one
 * frame (RabbitMQ's frame_max, 128 KiB by default), plus exchange, routing key and framing.
 */
const RECORD_OVERHEAD_BYTES = 160 * 1024;

/** The most a segment with this ref may decompress to (its body bytes, plus a bound per record). */
export function segmentDecodedLimit(expected: Pick<ExpectedSegment, 'records' | 'bodyBytes'>): number {
  if (expected.records === undefined || expected.bodyBytes === undefined) return MAX_SEGMENT_DECODED_BYTES;
  return Math.min(MAX_SEGMENT_DECODED_BYTES, expected.bodyBytes + expected.records * RECORD_OVERHEAD_BYTES + 64 * 1024);
}

/**
 * Verify and decode a stored segment; any failure throws CorruptDataError naming the key. A sealed
 * segment is opened with `vault` (its tag checked) before anything is decompressed; a plaintext
 * one is accepted with or without a vault, since the manifest that names it records its sha256.
 */
export async function decodeSegment(bytes: Buffer, expected: ExpectedSegment, vault?: Vault): Promise<Segment> {
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
  const compressed = isSealed(bytes) ? await requireVault(vault, 'segment', key).open(bytes, 'segment', key) : bytes;
  let plain: Buffer;
  try {
    plain = await decompressBounded(codec, compressed, segmentDecodedLimit(expected), 'segment', key);
  } catch (err) {
    if (err instanceof OversizedObjectError) throw err;
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
