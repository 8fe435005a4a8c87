import { describe, expect, it } from 'vitest';
import { CaptureLedger } from '../../services/worker/capture-ledger.js';
import type { QueueDefinition, SegmentRef } from '../../services/gen/tidemark/v1/store.js';

const definition = { vhost: '/', name: 'orders' } as QueueDefinition;
const queue = { definition, journal: 'tidemark.journal.orders', startOffset: 0 };

function segment(first: number, last: number): SegmentRef {
  return { key: `s-${first}-${last}`, firstOffset: first, lastOffset: last, records: last - first + 1, messages: 0, storedBytes: 0, bodyBytes: 0, sha256: '', codec: 'identity' };
}

describe('CaptureLedger', () => {
  it('promises a cut only once every record below it is durable, not the fence itself', () => {
    const ledger = new CaptureLedger({ resumeOffset: 0, baseEpoch: 0, baseMessages: 0, baseBodyBytes: 0 });
    for (let i = 0; i < 3; i += 1) ledger.messageRead(10);
    ledger.fenceRead(1, 'r1', 3);
    const fence = ledger.fence(1, 'r1')!;
    expect(fence).toEqual({ roundId: 'r1', offset: 3, messages: 3, bodyBytes: 30 });
    expect(ledger.durableThrough(fence)).toBe(false);
    ledger.written(segment(0, 1));
    expect(ledger.durableThrough(fence)).toBe(false);
    ledger.written(segment(2, 2));
    expect(ledger.durableThrough(fence)).toBe(true);
    expect(ledger.part(fence, queue).segments.map((s) => s.key)).toEqual(['s-0-1', 's-2-2']);
  });

  it('answers only for the round id the fence carried, and a reused epoch replaces the earlier fence', () => {
    const ledger = new CaptureLedger({ resumeOffset: 0, baseEpoch: 0, baseMessages: 0, baseBodyBytes: 0 });
    ledger.fenceRead(4, 'old', 0);
    ledger.messageRead(1);
    ledger.fenceRead(4, 'new', 2);
    expect(ledger.fence(4, 'old')).toBeUndefined();
    expect(ledger.fence(4, 'new')?.offset).toBe(2);
    ledger.abort(4, 'old');
    expect(ledger.fence(4, 'new')).toBeDefined();
    expect(ledger.commit(4, 'old')).toBe(false);
    ledger.abort(4, 'new');
    expect(ledger.fence(4, 'new')).toBeUndefined();
  });

  it('on COMMIT adopts the cut as base and forgets what the committed chain holds', () => {
    const ledger = new CaptureLedger({ resumeOffset: 0, baseEpoch: 0, baseMessages: 0, baseBodyBytes: 0 });
    ledger.messageRead(1);
    ledger.fenceRead(1, 'r1', 1);
    ledger.messageRead(1);
    ledger.fenceRead(2, 'r2', 3);
    ledger.written(segment(0, 0));
    ledger.written(segment(1, 4));
    expect(ledger.commit(2, 'r2')).toBe(true);
    expect(ledger.baseEpoch).toBe(2);
    expect(ledger.fence(1, 'r1')).toBeUndefined();
    // The segment holding offsets past the cut stays: the next checkpoint needs them.
    ledger.fenceRead(3, 'r3', 5);
    expect(ledger.part(ledger.fence(3, 'r3')!, queue).segments.map((s) => s.key)).toEqual(['s-1-4']);
  });
});
