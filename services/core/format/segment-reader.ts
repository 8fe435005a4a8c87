/**
 * Reads one queue's prefix back from its segments: every data record with offset in
 * [startOffset, cutOffset), once each, in offset order. Segments may overlap (a segment that
 * straddles a cut is listed by two checkpoints, a re-captured range by two workers): an offset
 * already emitted is skipped, and a missing offset is an error, never a silent gap (G2).
 *
 * A restore first runs {@link verifyPrefix} over a queue's prefix and publishes with
 * {@link readPrefix} only if it passes, so damaged data fails the queue before any of it is
 * published.
 */
import type { Record as JournalRecord, Segment, SegmentRef } from '../../gen/tidemark/v1/store.js';
import { CorruptDataError, IncompletePrefixError } from '../errors.js';
import { decodeSegment, isFenceRange } from './segment-codec.js';
import { MAX_UNDELIVERED_OFFSETS } from './names.js';
import type { ObjectStore } from '../store/object-store.js';

export interface PrefixSpec {
  vhost: string;
  queue: string;
  startOffset: number;
  cutOffset: number;
  segments: SegmentRef[];
}

/** Segment refs sorted by offset with duplicates (same key) removed. */
export function orderSegments(segments: SegmentRef[]): SegmentRef[] {
  const byKey = new Map<string, SegmentRef>();
  for (const s of segments) byKey.set(s.key, s);
  return [...byKey.values()].sort((a, b) => a.firstOffset - b.firstOffset || a.lastOffset - b.lastOffset);
}

/**
 * Yields the data records of the prefix, fences left out. `fromOffset` resumes a partly done read.
 * Fetches only the segments that hold offsets still needed, one at a time, and checks each one
 * (see {@link fetchSegment}) before yielding anything from it.
 */
export async function* readPrefix(store: ObjectStore, spec: PrefixSpec, fromOffset = spec.startOffset): AsyncGenerator<JournalRecord> {
  for await (const record of prefixRecords(store, spec, fromOffset)) {
    if (record.fenceEpoch === 0) yield record;
  }
}

/** What {@link verifyPrefix} found in a prefix. */
export interface VerifiedPrefix {
  /** Stored segments fetched and checked (fence ranges have no object). */
  segments: number;
  /** Their stored bytes: what the check read from the store. */
  storedBytes: number;
  /** Data messages in [startOffset, cutOffset). */
  messages: number;
  /** Their body bytes. */
  bodyBytes: number;
}

export interface VerifyOptions {
  /** Data messages the manifest says the prefix holds; a different count fails. @default not checked */
  expectedMessages?: number;
  /** Stops the check between segments; it then throws the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Checks, without keeping anything, that the whole prefix can be read: every segment it needs
 * exists, its sha256 equals the ref's, it decompresses and decodes, its records are exactly its
 * promised offsets, and the segments cover startOffset..cutOffset-1 with no gap. This is the
 * same walk as {@link readPrefix}, so a prefix that passes reads back whole unless the store
 * changes in between (a re-read checks every sha256 again). Memory: VERIFY_READ_AHEAD segments,
 * fetched and checked at once.
 * Throws CorruptDataError naming the offending segment key, or ObjectNotFoundError (with `key`)
 * for a segment object that is not in the store.
 */
export async function verifyPrefix(store: ObjectStore, spec: PrefixSpec, options: VerifyOptions = {}): Promise<VerifiedPrefix> {
  const found: VerifiedPrefix = { segments: 0, storedBytes: 0, messages: 0, bodyBytes: 0 };
  const onSegment = (ref: SegmentRef) => {
    if (options.signal?.aborted) throw options.signal.reason;
    found.segments += 1;
    found.storedBytes += ref.storedBytes;
  };
  for await (const record of prefixRecords(store, spec, spec.startOffset, onSegment, VERIFY_READ_AHEAD)) {
    if (record.fenceEpoch !== 0) continue;
    found.messages += 1;
    found.bodyBytes += record.body.length;
  }
  if (options.expectedMessages !== undefined && found.messages !== options.expectedMessages) {
    throw new CorruptDataError(
      `the segments of ${spec.vhost}/${spec.queue} hold ${found.messages} message(s) in offsets ${spec.startOffset}..${spec.cutOffset - 1}, but the checkpoint says ${options.expectedMessages}`,
      '',
    );
  }
  return found;
}

/** How many segments the verification pass fetches and checks at once (it keeps none of them). */
export const VERIFY_READ_AHEAD = 4;

/**
 * Every record (fences included) with offset in [fromOffset, cutOffset), once each, in order.
 * `onSegment` hears each stored segment just before it is fetched (a fence range has no object
 * and holds no record to yield). With `readAhead` > 1, up to that many
 * segments are fetched and checked at once (in offset order of yielding all the same), so a
 * store's latency and the checks overlap; memory is that many segments.
 */
async function* prefixRecords(
  store: ObjectStore,
  spec: PrefixSpec,
  fromOffset: number,
  onSegment: (ref: SegmentRef) => void = () => {},
  readAhead = 1,
): AsyncGenerator<JournalRecord> {
  const { refs, problem } = planPrefix(spec, fromOffset);
  // The records of each planned ref, fetched (and checked) ahead of use, in plan order.
  const fetching: Array<Promise<JournalRecord[]>> = [];
  let started = 0;
  const startNext = () => {
    const ref = refs[started++];
    if (isFenceRange(ref)) {
      // Offsets that hold only fences: nothing to fetch, nothing to yield.
      fetching.push(Promise.resolve([]));
      return;
    }
    onSegment(ref);
    const fetched = fetchSegment(store, ref, spec).then((segment) => segment.records);
    fetched.catch(() => {}); // awaited in order below; a failure ahead must not go unhandled meanwhile
    fetching.push(fetched);
  };
  let next = Math.max(fromOffset, spec.startOffset);
  for (let i = 0; i < refs.length; i += 1) {
    while (started < refs.length && started < i + Math.max(1, readAhead)) startNext();
    const records = await fetching.shift()!;
    for (const record of records) {
      if (record.offset < next) continue;
      if (record.offset >= spec.cutOffset) break;
      next = record.offset + 1;
      yield record;
    }
  }
  if (problem) throw problem;
}

/**
 * The segments a read of [fromOffset, cutOffset) needs, in order, and the error it ends with if
 * they do not cover it. Only the refs are looked at: a segment that passes its checks holds
 * exactly the offsets its ref names.
 */
function planPrefix(spec: PrefixSpec, fromOffset: number): { refs: SegmentRef[]; problem?: IncompletePrefixError } {
  const refs: SegmentRef[] = [];
  let next = Math.max(fromOffset, spec.startOffset);
  const where = `${spec.vhost}/${spec.queue}`;
  for (const ref of orderSegments(spec.segments)) {
    if (next >= spec.cutOffset) break;
    if (ref.lastOffset < next) continue;
    // Capture leaves out offsets the broker never delivers (a few at a stream segment start):
    // between two segments such a hole is expected; a wider one means segments are missing.
    if (ref.firstOffset > next && ref.firstOffset - next <= MAX_UNDELIVERED_OFFSETS && next > spec.startOffset) next = ref.firstOffset;
    if (ref.firstOffset > next) {
      const problem = new IncompletePrefixError(
        `checkpoint data of ${where} has a gap: offsets ${next}..${ref.firstOffset - 1} are in no segment (the next one is ${ref.key})`,
        ref.key,
        next,
      );
      return { refs, problem };
    }
    refs.push(ref);
    next = Math.min(ref.lastOffset + 1, spec.cutOffset);
  }
  // The same hole can sit right before the fence at the cut.
  if (next < spec.cutOffset && spec.cutOffset - next <= MAX_UNDELIVERED_OFFSETS && next > spec.startOffset) next = spec.cutOffset;
  if (next < spec.cutOffset) {
    const problem = new IncompletePrefixError(
      `checkpoint data of ${where} ends at offset ${next} but the cut is ${spec.cutOffset}: segments are missing from the checkpoint's manifest`,
      '',
      next,
    );
    return { refs, problem };
  }
  return { refs };
}

/**
 * Reads one segment (no larger than its ref's stored size) and checks it (decodeSegment: sha256,
 * authentication tag when sealed, bounded decompression, protobuf, version, offsets) and
 * that it belongs to the queue. A missing object rejects with the store's ObjectNotFoundError,
 * which names the key.
 */
async function fetchSegment(store: ObjectStore, ref: SegmentRef, spec: PrefixSpec): Promise<Segment> {
  // Never more than the manifest recorded: a replaced or planted object is refused unread.
  const bytes = await store.get(ref.key, ref.storedBytes > 0 ? { maxBytes: ref.storedBytes } : {});
  const segment = await decodeSegment(
    bytes,
    {
      key: ref.key,
      sha256: ref.sha256,
      codec: ref.codec,
      firstOffset: ref.firstOffset,
      lastOffset: ref.lastOffset,
      records: ref.records,
      bodyBytes: ref.bodyBytes,
    },
    store.vault,
  );
  if (segment.vhost !== spec.vhost || segment.queue !== spec.queue) {
    throw new CorruptDataError(
      `segment ${ref.key} is corrupt: it holds records of ${segment.vhost}/${segment.queue}, not ${spec.vhost}/${spec.queue}; nothing from it was used`,
      ref.key,
    );
  }
  return segment;
}
