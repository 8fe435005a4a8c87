/**
 * Queues outside a checkpoint's cut (G8), without I/O: the marks a round gives its failed queues,
 * what each worker hears it counted, where a carried queue's capture resumes, and how a carried
 * queue's renewal stays detectable (services/coordinator/outside-cut.ts, assignment.ts baseOf,
 * journal-renewals.ts).
 */
import { describe, expect, it } from 'vitest';
import { baseOf } from '../../services/coordinator/assignment.js';
import { JournalRenewals } from '../../services/coordinator/journal-renewals.js';
import { countedByWorker, decideRequest, describeOutside, outsideCutQueues, outsideQueues } from '../../services/coordinator/outside-cut.js';
import { queueKey } from '../../services/core/format/queue-key.js';
import type { Logger } from '../../services/core/index.js';
import type { CheckpointManifest, QueueCheckpoint } from '../../services/gen/tidemark/v1/store.js';
import { Decision } from '../../services/gen/tidemark/v1/worker.js';

const entry = (name: string, extra: Partial<QueueCheckpoint> = {}) => ({ definition: { vhost: '/', name }, workerId: 'w1', cutOffset: 10, ...extra }) as QueueCheckpoint;
const quiet = { debug() {}, info() {}, warn() {}, error() {} } as unknown as Logger;

describe('outside the cut (G8)', () => {
  it('marks a failed queue outside since the parent, keeps an older mark, and leaves out a queue no checkpoint holds', () => {
    const prior = new Map([
      [queueKey('/', 'inside-before'), entry('inside-before')],
      [queueKey('/', 'outside-before'), entry('outside-before', { outsideCut: { sinceEpoch: 2, sinceMs: 100, reason: 'old' } })],
    ]);
    const failures = new Map(
      ['outside-before', 'inside-before', 'new'].map((name) => [queueKey('/', name), { vhost: '/', queue: name, reason: `${name} failed` }]),
    );
    expect(outsideQueues(failures, 7, 5_000, (id) => prior.get(id))).toEqual([
      { vhost: '/', queue: 'inside-before', sinceEpoch: 7, sinceMs: 5_000, reason: 'inside-before failed' },
      { vhost: '/', queue: 'new', sinceEpoch: 0, sinceMs: 5_000, reason: 'new failed' },
      { vhost: '/', queue: 'outside-before', sinceEpoch: 2, sinceMs: 100, reason: 'outside-before failed' },
    ]);
    // With no parent checkpoint nothing can be carried.
    expect(outsideQueues(failures, 0, 5_000, (id) => prior.get(id)).every((o) => o.sinceEpoch === 0)).toBe(true);
  });

  it('counts per worker only the entries inside the cut, and tells a worker with none ABORT', () => {
    const manifest = { queues: [entry('a'), entry('b', { outsideCut: { sinceEpoch: 3, sinceMs: 1, reason: 'x' } }), entry('c', { workerId: 'w2' })] } as unknown as CheckpointManifest;
    const counted = countedByWorker(manifest);
    expect([...counted].map(([w, qs]) => [w, qs.map((q) => q.queue)])).toEqual([
      ['w1', ['a']],
      ['w2', ['c']],
    ]);
    const round = { leaderToken: 4, epoch: 9, roundId: 'r9' };
    expect(decideRequest(round, true, counted.get('w1'))).toMatchObject({ decision: Decision.DECISION_COMMIT, counted: [{ queue: 'a' }] });
    expect(decideRequest(round, true, counted.get('w3') ?? [])).toMatchObject({ decision: Decision.DECISION_ABORT, counted: [] });
    expect(decideRequest(round, true, undefined)).toMatchObject({ decision: Decision.DECISION_COMMIT, counted: [] });
    expect(decideRequest(round, false, counted.get('w1'))).toMatchObject({ decision: Decision.DECISION_ABORT, counted: [] });
  });

  it('lists the carried queues of a checkpoint, longest outside first, and describes them for a round reason', () => {
    const manifest = {
      queues: [entry('late', { outsideCut: { sinceEpoch: 5, sinceMs: 900, reason: 'r2' } }), entry('fine'), entry('early', { outsideCut: { sinceEpoch: 3, sinceMs: 300, reason: 'r1' } })],
    } as unknown as CheckpointManifest;
    expect(outsideCutQueues(manifest).map((q) => q.queue)).toEqual(['early', 'late']);
    expect(describeOutside([{ vhost: '/', queue: 'q', sinceEpoch: 3, sinceMs: 1, reason: 'gap' }, { vhost: 'v', queue: 'n', sinceEpoch: 0, sinceMs: 1, reason: 'down' }])).toBe(
      '2 queue(s) outside the cut: //q carried from checkpoint 3 (gap); v/n left out, no checkpoint holds it yet (down)',
    );
  });

  it('resumes a carried queue from the checkpoint whose cut it holds: the fence at its cut is that one', () => {
    expect(baseOf(entry('q'), 9)).toBe(9);
    expect(baseOf(entry('q', { outsideCut: { sinceEpoch: 4, sinceMs: 1, reason: 'x' } }), 9)).toBe(4);
  });

  it('keeps a carried queue\'s checkpoint time, so a journal replaced since its last good cut is still seen as renewed', () => {
    const renewals = new JournalRenewals(quiet);
    const id = queueKey('/', 'q');
    renewals.committed(new Set([id]), 1_000);
    // Checkpoint 2 carries q (outside its cut): q's cut is still the one taken at 1,000.
    renewals.committed(new Set(), 5_000, new Map([[id, 1_000]]));
    renewals.listed(id, 3_000);
    expect(renewals.renewed([[id, 'q']]).has(id)).toBe(true);
    // A queue inside a later cut is checkpointed from the new journal.
    renewals.committed(new Set([id]), 6_000);
    expect(renewals.renewed([[id, 'q']]).has(id)).toBe(false);
  });
});
