import { describe, expect, it } from 'vitest';
import { consolidatedEntry, keptHistory, withHistory } from '../../services/core/state/catalog.js';
import { historyOf } from '../../services/core/state/contents.js';
import { QueueCheckpoint, type SegmentRef } from '../../services/gen/tidemark/v1/store.js';

function ref(first: number, last: number): SegmentRef {
  return { key: `segments/v/q/${first}-${last}.seg`, firstOffset: first, lastOffset: last, records: last - first + 1, messages: last - first + 1, storedBytes: 1, bodyBytes: 1, sha256: 'ab', codec: 'gzip' };
}

/** A queue's entry: every field not given takes its protobuf default. */
function entry(over: Partial<QueueCheckpoint>): QueueCheckpoint {
  return QueueCheckpoint.fromPartial({
    definition: { vhost: 'v', name: 'q', type: 'classic', durable: true, autoDelete: false, bindings: [] },
    journal: 'j',
    cutOffset: 100,
    messages: 90,
    workerId: 'w',
    ...over,
  });
}

const chain = [ref(0, 19), ref(20, 39), ref(40, 59), ref(60, 79), ref(80, 104)];

describe('consolidation keeps what the checkpoint needs (pure parts of Catalog.consolidate)', () => {
  it('keeps all history from the start when retention lets none go, and writes no history fields', () => {
    const e = entry({ headOffset: 70, headMessages: 63 });
    const kept = keptHistory(e, [], undefined);
    expect(kept).toEqual({ offset: 0, messages: 0 });
    const full = consolidatedEntry(e, chain, kept);
    expect(full.segments).toEqual(chain);
    expect(full.baseEpoch).toBe(0);
    expect([full.historyOffset, full.historyMessages]).toEqual([0, 0]);
  });

  it('lets history go up to the floor retention gives, listing only the segments from there, and says so in fields 17/18', () => {
    const e = entry({ headOffset: 70, headMessages: 63, baseEpoch: 4 });
    const kept = keptHistory(e, [], { offset: 45, messages: 40 });
    expect(kept).toEqual({ offset: 45, messages: 40 });
    const full = consolidatedEntry(e, chain, kept);
    expect(full.segments.map((s) => s.firstOffset)).toEqual([40, 60, 80]);
    expect(historyOf(full)).toEqual({ offset: 45, messages: 40 });
    expect(full.baseEpoch).toBe(0);
  });

  it('never lets go of what the queue held at the cut: the floor stops at the head', () => {
    const e = entry({ headOffset: 50, headMessages: 44 });
    const kept = keptHistory(e, [], { offset: 90, messages: 81 });
    expect(kept).toEqual({ offset: 50, messages: 44 });
    expect(consolidatedEntry(e, chain, kept).segments.map((s) => s.firstOffset)).toEqual([40, 60, 80]);
  });

  it('with heads not yet recorded (head = start), keeps everything whatever retention asks', () => {
    const e = entry({});
    expect(keptHistory(e, [], { offset: 45, messages: 40 })).toEqual({ offset: 0, messages: 0 });
  });

  it("never starts before where its chain already let go, and an incremental entry inherits that (withHistory)", () => {
    const link = entry({ cutOffset: 60, historyOffset: 30, historyMessages: 27 });
    const e = entry({ baseEpoch: 3, headOffset: 70, headMessages: 63 });
    const kept = keptHistory(e, [link], undefined);
    expect(kept).toEqual({ offset: 30, messages: 27 });
    expect(historyOf(withHistory(e, kept))).toEqual({ offset: 30, messages: 27 });
    // A link of another journal (renewed: a new start) says nothing about this one.
    expect(keptHistory(e, [entry({ startOffset: 5, historyOffset: 30, historyMessages: 27 })], undefined)).toEqual({ offset: 0, messages: 0 });
  });
});
