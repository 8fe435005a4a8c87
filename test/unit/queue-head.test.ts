import { describe, expect, it } from 'vitest';
import type { QueueCensus } from '../../services/gen/tidemark/v1/worker.js';
import { CaptureLedger } from '../../services/worker/capture-ledger.js';
import { DataIndex, HeadTracker } from '../../services/worker/queue-head.js';
import type { QueueDefinition } from '../../services/gen/tidemark/v1/store.js';

const definition: QueueDefinition = { vhost: '/', name: 'q', type: 'classic', durable: true, autoDelete: false, arguments: undefined, bindings: [] };

function census(extra: Partial<QueueCensus> = {}): QueueCensus {
  return { ready: 0, unackedBound: 0, margin: 0, markerAtMs: 1_000, maxHoldMs: 0, fallback: '', requeued: false, stream: false, ...extra };
}

/** A journal read by a ledger: `m` data messages, `F`/`M` fences/markers of the given epochs. */
class Journal {
  readonly ledger: CaptureLedger;
  offset: number;
  constructor(start = 0, base: Partial<ConstructorParameters<typeof CaptureLedger>[0]> = {}) {
    this.ledger = new CaptureLedger({ resumeOffset: start, baseEpoch: 0, baseMessages: 0, baseBodyBytes: 0, startOffset: start, ...base });
    this.offset = start;
  }
  data(n: number): this {
    for (let i = 0; i < n; i += 1) {
      this.ledger.messageRead(1);
      this.offset += 1;
    }
    return this;
  }
  marker(epoch: number): this {
    this.ledger.markerRead(epoch, `r${epoch}`, this.offset);
    this.offset += 1;
    return this;
  }
  fence(epoch: number): this {
    this.ledger.fenceRead(epoch, `r${epoch}`, this.offset);
    this.offset += 1;
    return this;
  }
  hole(n: number): this {
    this.ledger.gap(this.offset + n - 1);
    this.offset += n;
    return this;
  }
  part(epoch: number, c: QueueCensus | undefined, start = 0) {
    return this.ledger.part(this.ledger.fence(epoch, `r${epoch}`)!, { definition, journal: 'j', startOffset: start }, 'w', { epoch, census: c });
  }
}

describe('DataIndex', () => {
  it('maps a data index to its offset across fences and holes', () => {
    const index = new DataIndex();
    index.restart(10, 0); // data 0.. at 10..
    index.run(15, 5); // a fence at 14 would make this (15, 4); say offsets 14 held a fence after 4 data: no
    expect(index.offsetOf(0)).toBe(10);
    expect(index.offsetOf(4)).toBe(14);
    expect(index.offsetOf(5)).toBe(15);
    expect(index.offsetOf(9)).toBe(19);
    index.forgetBefore(6);
    expect(index.offsetOf(4)).toBeUndefined();
    expect(index.offsetOf(6)).toBe(16);
  });
});

describe('the head at a cut', () => {
  it('counts back from the marker by ready + unacknowledged bound + margin, and skips fences and holes', () => {
    // 100 data, a hole of 3 offsets, 50 data, marker, 10 data, fence.
    const j = new Journal().data(100).hole(3).data(50).marker(1).data(10).fence(1);
    const part = j.part(1, census({ ready: 40, unackedBound: 10, margin: 2 }));
    // D(M0) = 150; head index = 150 − 52 = 98, at offset 98 (before the hole).
    expect(part.headMessages).toBe(98);
    expect(part.headOffset).toBe(98);
    expect(part.headKnown).toBe(true);
    // best = 150 − 40 = 110 → messages 98..109 may have been acknowledged.
    expect(part.possiblyAcked).toBe(12);
    // After the hole: index 100 sits at offset 103.
    const j2 = new Journal().data(100).hole(3).data(50).marker(1).data(10).fence(1);
    expect(j2.part(1, census({ ready: 50 })).headOffset).toBe(103);
  });

  it('never moves back, and keeps the earlier head when the census falls back', () => {
    const j = new Journal().data(100).marker(1).fence(1);
    expect(j.part(1, census({ ready: 20 })).headMessages).toBe(80);
    j.ledger.commit(1, 'r1');
    j.data(10).marker(2).fence(2);
    // A census that would put the head before the committed one keeps the committed one.
    const back = j.part(2, census({ ready: 100 }));
    expect(back.headMessages).toBe(80);
    expect(back.headOffset).toBe(80);
    const priority = j.part(2, census({ ready: 5, fallback: 'x-max-priority is set' }));
    expect(priority.headMessages).toBe(80);
    expect(priority.headBasis).toMatch(/earlier head kept: x-max-priority/);
  });

  it('a queue that never had a safe head restores history and says why', () => {
    const j = new Journal().data(30).marker(1).fence(1);
    const part = j.part(1, census({ fallback: 'x-max-priority is set' }));
    expect(part.headKnown).toBe(false);
    expect(part.headOffset).toBe(0);
    expect(part.headBasis).toBe('history: x-max-priority is set');
  });

  it('counts messages that predate protection, until they are consumed', () => {
    const j = new Journal(500).data(10).marker(1).fence(1);
    const first = j.part(1, census({ ready: 25 }), 500);
    expect(first.predating).toBe(15);
    expect(first.headOffset).toBe(500);
    j.ledger.commit(1, 'r1');
    j.data(10).marker(2).fence(2);
    const second = j.part(2, census({ ready: 8 }), 500);
    expect(second.predating).toBe(0);
    expect(second.headMessages).toBe(12);
    expect(second.headOffset).toBe(500 + 2 + 12); // the first marker and fence sit at 510 and 511
  });

  it('a stream source starts where its own retention left it, and counts what predates protection only beyond the captured records', () => {
    const stream = (ready: number) => census({ ready, margin: 10, stream: true });
    // 100 captured before the marker, 10 between marker and fence; the extent read in between saw 5 of those 10.
    const j = new Journal().data(100).marker(1).data(10).fence(1);
    const whole = j.part(1, stream(105));
    expect(whole).toMatchObject({ headMessages: 0, headOffset: 0, predating: 0, headKnown: true });
    expect(whole.headBasis).toMatch(/retained 105 \(the stream's offsets\) \+ margin 10 .*everything captured is still held/);
    // The stream held 20 more than was ever captured: those predate protection.
    expect(j.part(1, stream(130)).predating).toBe(20);
    // A read that came back empty though messages were captured keeps the earlier head.
    expect(j.part(1, stream(0)).headBasis).toMatch(/read as empty, though messages were captured/);
    j.ledger.commit(1, 'r1');
    // Retention dropped the oldest: the stream keeps 60 at the marker of 150 → head 150 − (60 + 10) = 80.
    j.data(40).marker(2).fence(2);
    const trimmed = j.part(2, stream(60));
    expect(trimmed).toMatchObject({ headMessages: 80, headOffset: 80, predating: 0, headKnown: true });
    // Past the first marker and fence (at offsets 100 and 111), index 120 sits at offset 122.
    j.ledger.commit(2, 'r2');
    j.data(5).marker(3).fence(3);
    expect(j.part(3, stream(30)).headOffset).toBe(155 - 40 + 2);
  });

  it('with a hold bound, uses the frontier of a marker old enough, and waits for one', () => {
    const j = new Journal().data(100).marker(1).fence(1);
    // First round: no marker maxHold old yet → history.
    expect(j.part(1, census({ ready: 10, markerAtMs: 1_000, maxHoldMs: 5_000 })).headKnown).toBe(false);
    j.ledger.commit(1, 'r1');
    j.data(100).marker(2).fence(2);
    // Marker 1 (frontier 100 − 10 = 90) is 6 s older: head = min(200 − 30, 90) = 90.
    const part = j.part(2, census({ ready: 30, markerAtMs: 7_000, maxHoldMs: 5_000 }));
    expect(part.headMessages).toBe(90);
    expect(part.headBasis).toMatch(/hold bound/);
  });

  it('freezes after a requeue until everything then queued was delivered again', () => {
    const j = new Journal().data(100).marker(1).fence(1);
    j.part(1, census({ ready: 10 }));
    j.ledger.commit(1, 'r1');
    j.data(50).marker(2).fence(2);
    expect(j.part(2, census({ ready: 10, requeued: true })).headMessages).toBe(90);
    j.ledger.commit(2, 'r2');
    j.data(10).marker(3).fence(3);
    // Frontier 160 − 30 = 130 < 150 (D at the requeue): still frozen.
    expect(j.part(3, census({ ready: 30 })).headMessages).toBe(90);
    j.ledger.commit(3, 'r3');
    j.data(10).marker(4).fence(4);
    // Frontier 170 − 5 = 165 ≥ 150: counts are trusted again.
    expect(j.part(4, census({ ready: 5 })).headMessages).toBe(165);
  });

  it('a marker of another round, or none, keeps the head', () => {
    const j = new Journal().data(10).fence(1);
    expect(j.part(1, census({ ready: 1 })).headBasis).toBe("history: the round's marker was not read before its fence");
    const t = new HeadTracker({ offset: 0, messages: 0, predating: 0, known: false }, 0);
    expect(t.headAt(undefined, { markerMessages: 5, fenceMessages: 5, fenceOffset: 6 }, new DataIndex()).basis).toBe('history: no census this round');
  });

  it('a head past the fence clamps to the cut (an empty queue holds nothing before it)', () => {
    const j = new Journal().data(10).marker(1).fence(1);
    const part = j.part(1, census({ ready: 0 }));
    expect(part.headOffset).toBe(11);
    expect(part.headMessages).toBe(10);
    expect(part.messages - part.headMessages).toBe(0);
  });

  it('a head that COMMIT adopts only from the round that committed', () => {
    const j = new Journal().data(100).marker(1).fence(1);
    j.part(1, census({ ready: 10 }));
    j.ledger.abort(1, 'r1');
    j.data(5).marker(2).fence(2);
    j.part(2, census({ ready: 100 }));
    j.ledger.commit(2, 'r2');
    j.data(5).marker(3).fence(3);
    // The committed head is round 2's (5), not round 1's (90).
    expect(j.part(3, census({ ready: 200 })).headMessages).toBe(5);
  });
});

describe('DataIndex bounds', () => {
  it('keeps at most a bounded number of runs; an index before them is unknown (the head is then kept)', () => {
    const index = new DataIndex();
    index.restart(0, 0);
    for (let i = 1; i <= 30_000; i += 1) index.run(i * 3, i * 2); // a non-data record every third offset
    expect(index.size).toBeLessThanOrEqual(20_000);
    expect(index.offsetOf(0)).toBeUndefined();
    expect(index.offsetOf(60_000)).toBe(90_000);
    expect(index.offsetOf(59_999)).toBe(29_999 * 3 + 1);
  });
});
