import { describe, expect, it } from 'vitest';
import { JournalCursor } from '../../services/worker/journal-cursor.js';
import { JournalGapError } from '../../services/worker/errors.js';

const names = { journal: 'tm.journal.q', queue: 'v/q' };

describe('journal cursor', () => {
  it('starts a queue with no checkpoint wherever its journal starts, and accepts the offsets in order', () => {
    const cursor = new JournalCursor({ startOffset: 0, resumeOffset: 0, baseEpoch: 0 }, names);
    cursor.attached();
    expect(cursor.admit(40, 0)).toEqual({ accept: true, startedAt: 40 });
    cursor.accepted(40);
    expect(cursor.admit(41, 0)).toEqual({ accept: true });
    cursor.accepted(41);
    expect([cursor.startOffset, cursor.nextOffset]).toEqual([40, 42]);
  });

  it('skips re-deliveries', () => {
    const cursor = new JournalCursor({ startOffset: 0, resumeOffset: 10, baseEpoch: 0 }, names);
    cursor.attached();
    expect(cursor.admit(10, 0).accept).toBe(true);
    cursor.accepted(10);
    expect(cursor.admit(9, 0)).toEqual({ accept: false });
    expect(cursor.admit(10, 0)).toEqual({ accept: false });
  });

  it('passes over the few empty offsets of a segment start mid-read, and refuses a hole at the start of a read or a wide one', () => {
    const cursor = new JournalCursor({ startOffset: 0, resumeOffset: 10, baseEpoch: 0 }, names);
    cursor.attached();
    expect(cursor.admit(10, 0).accept).toBe(true);
    cursor.accepted(10);
    expect(cursor.admit(13, 0)).toEqual({ accept: true, emptyOffsets: [11, 12] });
    cursor.accepted(13);
    expect(() => cursor.admit(30, 0)).toThrow(/skipped offsets 14\.\.29/);
    const fresh = new JournalCursor({ startOffset: 0, resumeOffset: 10, baseEpoch: 0 }, names);
    fresh.attached();
    expect(() => fresh.admit(12, 0)).toThrow(JournalGapError);
  });

  it('resuming from a cut, requires that checkpoint\'s fence at the cut', () => {
    const good = new JournalCursor({ startOffset: 0, resumeOffset: 50, baseEpoch: 7 }, names);
    good.attached();
    expect(good.admit(50, 7).accept).toBe(true);
    good.accepted(50);
    // Checked once: a later fence of another epoch at another offset is fine.
    expect(good.admit(51, 8).accept).toBe(true);
    const replaced = new JournalCursor({ startOffset: 0, resumeOffset: 50, baseEpoch: 7 }, names);
    replaced.attached();
    expect(() => replaced.admit(50, 0)).toThrow(/does not hold checkpoint 7's fence at offset 50/);
  });
});
