import { describe, expect, it } from 'vitest';
import { sweepPlan, type SweepInput } from '../../services/coordinator/store-gc.js';
import { partitionKey, segmentKey, segmentPrefix } from '../../services/core/store/index.js';
import { type CheckpointManifest, QueueCheckpoint } from '../../services/gen/tidemark/v1/store.js';

const NOW = 1_800_000_000_000;
const GRACE = 15 * 60_000;
const OLD = NOW - GRACE - 1;

const seg = (queue: string, first: number, last: number) => segmentKey('/', queue, first, last, 'ab'.repeat(8));

/** A queue's entry: every field not given takes its protobuf default. */
function entry(queue: string, cut: number, keys: string[]): QueueCheckpoint {
  return QueueCheckpoint.fromPartial({
    definition: { vhost: '/', name: queue, type: 'classic', durable: true, autoDelete: false, bindings: [] },
    journal: `j.${queue}`,
    cutOffset: cut,
    segments: keys.map((key) => ({ key, firstOffset: 0, lastOffset: 0, records: 1, messages: 1, storedBytes: 1, bodyBytes: 1, sha256: 'ab', codec: 'gzip' })),
    workerId: 'w1',
  });
}

function manifest(epoch: number, committedAtMs: number, queues: QueueCheckpoint[]): CheckpointManifest {
  return { formatVersion: 1, epoch, parentEpoch: 0, full: true, startedAtMs: committedAtMs, committedAtMs, leaderToken: 1, coordinatorId: 'c', fences: [], exchanges: [], queues, messages: 0, bodyBytes: 0, roundId: `r${epoch}` };
}

function input(over: Partial<SweepInput>): SweepInput {
  // Only `q` is protected now; `deleted-queue` is not.
  const protectedQueues = new Set([segmentPrefix('/', 'q')]);
  return { manifests: [], segments: [], staging: [], stagedRefs: new Set(), openEpochs: new Set(), newestStaged: 0, nowMs: NOW, graceMs: GRACE, protectedQueues, ...over };
}

const obj = (key: string, lastModifiedMs = OLD) => ({ key, size: 10, lastModifiedMs });

describe('garbage collection sweep (pure)', () => {
  const kept = seg('q', 0, 9);
  const orphan = seg('q', 10, 19); // below the cut (30), in no manifest
  const above = seg('q', 25, 40); // straddles the latest cut: capture holds it for the next round
  const gone = seg('deleted-queue', 0, 5); // a queue no checkpoint holds any more
  const latest = manifest(7, NOW - 60_000, [entry('q', 30, [kept])]);

  it('deletes old segments no manifest lists, below their queue latest cut, and those of queues no longer held', () => {
    const plan = sweepPlan(input({ manifests: [latest], segments: [obj(kept), obj(orphan), obj(above), obj(gone)] }));
    expect(plan.segments.map((o) => o.key)).toEqual([orphan, gone]);
    expect(plan.skipped).toBeUndefined();
  });

  it('keeps the segments of a protected queue no checkpoint holds yet (left out of its rounds, G8), and of any absent queue while the protected set is unknown', () => {
    const waiting = seg('new-queue', 0, 5);
    const known = new Set([segmentPrefix('/', 'q'), segmentPrefix('/', 'new-queue')]);
    expect(sweepPlan(input({ manifests: [latest], segments: [obj(waiting), obj(gone)], protectedQueues: known })).segments.map((o) => o.key)).toEqual([gone]);
    expect(sweepPlan(input({ manifests: [latest], segments: [obj(waiting), obj(gone)], protectedQueues: undefined })).segments).toEqual([]);
  });

  it('never deletes a listed key this layout does not write (a server that decoded %2F in its listing)', () => {
    const decoded = 'segments///q/00000000000000000000-00000000000000000009-abababababababab.seg';
    expect(sweepPlan(input({ manifests: [latest], segments: [obj(decoded), obj(gone)] })).segments.map((o) => o.key)).toEqual([gone]);
  });

  it('never deletes a segment newer than the grace period, or one a staged partition lists', () => {
    const plan = sweepPlan(input({ manifests: [latest], segments: [obj(orphan, NOW - 1_000), obj(gone)], stagedRefs: new Set([gone]) }));
    expect(plan.segments).toEqual([]);
  });

  it('sweeps no segment while no checkpoint was committed within the grace period', () => {
    const stale = manifest(7, NOW - GRACE - 5, [entry('q', 30, [kept])]);
    const plan = sweepPlan(input({ manifests: [stale], segments: [obj(orphan)] }));
    expect(plan.segments).toEqual([]);
    expect(plan.skipped).toMatch(/no checkpoint was committed within the grace period/);
    expect(sweepPlan(input({ segments: [obj(orphan)] })).segments).toEqual([]);
  });

  it('deletes old staged partitions below the latest epoch, but not the newest staged epoch nor an open round', () => {
    const staging = [3, 5, 6, 9].map((e) => obj(partitionKey(e, 'w1')));
    const recent = obj(partitionKey(4, 'w1'), NOW - 1_000);
    const plan = sweepPlan(input({ manifests: [latest], staging: [...staging, recent], openEpochs: new Set([5]), newestStaged: 6 }));
    expect(plan.staging.map((o) => o.key)).toEqual([partitionKey(3, 'w1')]);
  });
});
