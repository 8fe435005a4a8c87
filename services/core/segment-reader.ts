/**
 * Reads one queue's prefix back from its segments: every data record with offset in
 * [startOffset, cutOffset), once each, in offset order. Segments may overlap (a segment that
 * straddles a cut is listed by two checkpoints, a re-captured range by two workers): an offset
 * already emitted is skipped, and a missing offset is an error, never a silent gap (G2).
 */
import type { Record as JournalRecord, SegmentRef } from '../gen/tidemark/v1/store.js';
import { CorruptDataError } from './errors.js';
import { decodeSegment } from './segment-codec.js';
import type { ObjectStore } from './store/object-store.js';

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
 * Fetches only the segments that hold offsets still needed.
 */
export async function* readPrefix(store: ObjectStore, spec: PrefixSpec, fromOffset = spec.startOffset): AsyncGenerator<JournalRecord> {
  let next = Math.max(fromOffset, spec.startOffset);
  const where = `${spec.vhost}/${spec.queue}`;
  for (const ref of orderSegments(spec.segments)) {
    if (next >= spec.cutOffset) break;
    if (ref.lastOffset < next) continue;
    if (ref.firstOffset > next) {
      throw new CorruptDataError(
        `checkpoint data of ${where} has a gap: offsets ${next}..${ref.firstOffset - 1} are in no segment; nothing past offset ${next - 1} was restored for this queue`,
        ref.key,
      );
    }
    const bytes = await store.get(ref.key);
    const segment = await decodeSegment(bytes, {
      key: ref.key,
      sha256: ref.sha256,
      codec: ref.codec,
      firstOffset: ref.firstOffset,
      lastOffset: ref.lastOffset,
    });
    for (const record of segment.records) {
      if (record.offset < next) continue;
      if (record.offset >= spec.cutOffset) break;
      next = record.offset + 1;
      if (record.fenceEpoch === 0) yield record;
    }
  }
  if (next < spec.cutOffset) {
    throw new CorruptDataError(
      `checkpoint data of ${where} ends at offset ${next} but the cut is ${spec.cutOffset}: segments are missing`,
      '',
    );
  }
}
