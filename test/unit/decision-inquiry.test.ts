/** A worker asking for a round's decision adopts a cut only when its manifest is visible. */
import { describe, expect, it } from 'vitest';
import { answerInquiry, countedFor } from '../../services/worker/decision-inquiry.js';
import type { CheckpointManifest } from '../../services/gen/tidemark/v1/store.js';
import { queueKey } from '../../services/core/format/queue-key.js';

const round = { epoch: 7, roundId: 'r-7' };

describe('answerInquiry', () => {
  it('commits only when the epoch is visible with this round id', () => {
    expect(answerInquiry(round, { manifestRoundId: 'r-7', record: { state: 'committed', roundId: 'r-7' } })).toBe('commit');
    // Visible even when Redis forgot the record (trimmed or lost).
    expect(answerInquiry(round, { manifestRoundId: 'r-7' })).toBe('commit');
    // The same epoch number, visible from another round (Redis lost, numbers reused).
    expect(answerInquiry(round, { manifestRoundId: 'other', record: { state: 'committed', roundId: 'other' } })).toBe('abort');
  });

  it('waits while the round is undecided or committed but not yet visible', () => {
    expect(answerInquiry(round, { record: { state: 'started', roundId: 'r-7' } })).toBe('wait');
    expect(answerInquiry(round, { record: { state: 'committed', roundId: 'r-7' }, newestVisible: 6 })).toBe('wait');
    expect(answerInquiry(round, { record: { state: 'committed', roundId: 'r-7' } })).toBe('wait');
  });

  it('aborts when the round aborted, its record is gone, or the record is another round', () => {
    expect(answerInquiry(round, { record: { state: 'aborted', roundId: 'r-7' } })).toBe('abort');
    expect(answerInquiry(round, {})).toBe('abort');
    expect(answerInquiry(round, { record: { state: 'started', roundId: 'r-8' } })).toBe('abort');
  });

  it('forgets a committed round that never became visible once a later checkpoint is', () => {
    expect(answerInquiry(round, { record: { state: 'committed', roundId: 'r-7' }, newestVisible: 8 })).toBe('abort');
  });

  it('treats a record without a round id (older versions) as this round', () => {
    expect(answerInquiry(round, { record: { state: 'started' } })).toBe('wait');
    expect(answerInquiry(round, { record: { state: 'aborted' } })).toBe('abort');
  });
});

describe('countedFor', () => {
  it('takes from a visible manifest only this worker\'s queues inside the cut: a carried or another worker\'s queue keeps its base', () => {
    const q = (name: string, workerId: string, outside = false) => ({ definition: { vhost: '/', name }, workerId, outsideCut: outside ? { sinceEpoch: 3, sinceMs: 1, reason: 'x' } : undefined });
    const manifest = { queues: [q('a', 'w1'), q('b', 'w1', true), q('c', 'w2')] } as unknown as CheckpointManifest;
    expect(countedFor(manifest, 'w1')).toEqual(new Set([queueKey('/', 'a')]));
    expect(countedFor(manifest, 'w3')).toEqual(new Set());
  });
});
