import { describe, expect, it } from 'vitest';
import { queueViews } from '../../services/coordinator/status-page-views.js';
import { CheckpointManifest, QueueCheckpoint } from '../../services/gen/tidemark/v1/store.js';
import { QueueCaptureStatus } from '../../services/gen/tidemark/v1/worker.js';

const capture = (queue: string, fields: Partial<QueueCaptureStatus> = {}) => QueueCaptureStatus.fromPartial({ vhost: 'v', queue, journal: `j.${queue}`, nextOffset: 12, durableOffset: 10, buffered: 2, messages: 9, ...fields });
const latest = CheckpointManifest.fromPartial({
  epoch: 7,
  queues: [
    QueueCheckpoint.fromPartial({ definition: { vhost: 'v', name: 'a' }, cutOffset: 10, messages: 8, bodyBytes: 800 }),
    QueueCheckpoint.fromPartial({ definition: { vhost: 'v', name: 'gone-worker' }, cutOffset: 5, messages: 5, bodyBytes: 50 }),
  ],
});
const quiet = { coverageGaps: [], outsideCut: [], incompleteQueues: [], contentsQueues: [] };

describe('status page queue view', () => {
  it('joins each worker capture with the queue part of the latest cut, sorted by vhost and name', () => {
    const rows = queueViews([{ worker: 'w2', capture: capture('b') }, { worker: 'w1', capture: capture('a') }], latest, quiet);
    expect(rows.map((r) => r.queue)).toEqual(['a', 'b', 'gone-worker']);
    expect(rows[0]).toMatchObject({ worker: 'w1', captured: 9, durableOffset: 10, nextOffset: 12, buffered: 2, cut: { epoch: 7, cutOffset: 10, messages: 8, bodyBytes: 800 } });
    expect(rows[1]).toMatchObject({ worker: 'w2', cut: null });
    // In the checkpoint, but no live worker reports it: shown, with no worker.
    expect(rows[2]).toMatchObject({ worker: '', captured: 0, cut: { epoch: 7, messages: 5 } });
  });

  it('marks gaps, queues outside the cut, possibly incomplete ones and unknown contents', () => {
    const rows = queueViews([{ worker: 'w1', capture: capture('a') }], latest, {
      coverageGaps: [{ vhost: 'v', queue: 'a', sourcePublished: 10, captured: 7, uncaptured: 3, sinceMs: 1, reason: 'default exchange' }],
      outsideCut: [{ vhost: 'v', queue: 'a', sinceEpoch: 5, sinceMs: 1, reason: 'worker down' }],
      incompleteQueues: [{ vhost: 'v', queue: 'gone-worker', sinceEpoch: 6, detectedAtMs: 1, reason: 'node restarted', marks: 1 }],
      contentsQueues: [{ vhost: 'v', queue: 'gone-worker', predating: 0, headKnown: false, reason: 'no marker' }],
    });
    expect(rows[0]).toMatchObject({ coverageGap: { uncaptured: 3, reason: 'default exchange' }, outsideCut: { sinceEpoch: 5, reason: 'worker down' }, incomplete: null });
    expect(rows[1]).toMatchObject({ incomplete: { sinceEpoch: 6, reason: 'node restarted' }, contents: { headKnown: false, reason: 'no marker' }, coverageGap: null });
  });

  it('passes on the lag workers report', () => {
    expect(queueViews([{ worker: 'w1', capture: capture('a') }], undefined, quiet)[0]).toMatchObject({ lagMessages: 0, lagSeconds: 0 });
    const reported = { ...capture('a'), lagMessages: 42, lagSeconds: 3 };
    expect(queueViews([{ worker: 'w1', capture: reported }], undefined, quiet)[0]).toMatchObject({ lagMessages: 42, lagSeconds: 3 });
  });
});
