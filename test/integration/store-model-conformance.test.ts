/**
 * Conformance of the simulation's object store (test/sim/store.ts ObjectStoreModel) to the real
 * store as the protocol reads it (Catalog over an S3 store): one script of staged partitions and
 * manifest writes, applied to both, gives the same visible epochs, latest checkpoint, newest
 * staged epoch and token, and staged partitions read back by key. The simulation checks the
 * protocol only as well as its store behaves like the real one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../services/core/state/catalog.js';
import { checkpointKey, decodePartition, encodePartition, partitionKey, segmentKey } from '../../services/core/store/keys.js';
import { S3Store } from '../../services/core/store/s3-store.js';
import { CheckpointManifest, PartitionManifest } from '../../services/gen/tidemark/v1/store.js';
import { ObjectStoreModel } from '../sim/store.js';
import { testServices, uniqueName } from '../helpers/services.js';

let store: S3Store;

beforeAll(async () => {
  const { s3 } = await testServices();
  store = new S3Store({ bucket: uniqueName('tm-conf'), prefix: 'root', ...s3 });
  await store.ensureBucket();
});

afterAll(async () => {
  for (const key of await store.list('')) await store.delete(key);
  await store.close();
});

type Step =
  | { stage: { epoch: number; worker: string; token: number } }
  | { publish: { epoch: number; token: number; roundId: string } }
  | { segment: { queue: string; first: number; last: number } }
  | { deleteManifest: number }
  | { deleteStaged: { epoch: number; worker: string } }
  | { deleteSegment: { queue: string; first: number; last: number } };

const SHA = '0123456789abcdef';

describe('ObjectStoreModel against the real store', () => {
  it('shows the same checkpoints and staged partitions after every write', async () => {
    const model = new ObjectStoreModel();
    const steps: Step[] = [
      { stage: { epoch: 3, worker: 'w0', token: 2 } },
      { stage: { epoch: 3, worker: 'w1', token: 3 } },
      { publish: { epoch: 3, token: 3, roundId: '3-3-a' } },
      { stage: { epoch: 5, worker: 'w0', token: 4 } },
      { publish: { epoch: 2, token: 1, roundId: '1-2-b' } },
      { stage: { epoch: 4, worker: 'w1', token: 9 } },
      // A late write of another round under a used epoch replaces the object (unconditional PUTs).
      { publish: { epoch: 3, token: 5, roundId: '5-3-c' } },
      { stage: { epoch: 5, worker: 'w1', token: 6 } },
      { stage: { epoch: 5, worker: 'w0', token: 7 } },
      // Retention and garbage collection (store-gc.ts): deletes, and listings with times.
      { segment: { queue: 'q1', first: 0, last: 9 } },
      { segment: { queue: 'q1', first: 10, last: 19 } },
      { deleteManifest: 2 },
      { deleteStaged: { epoch: 3, worker: 'w0' } },
      { deleteSegment: { queue: 'q1', first: 0, last: 9 } },
      // Deleting what is already gone is not an error, and changes nothing.
      { deleteManifest: 2 },
      { deleteSegment: { queue: 'q1', first: 0, last: 9 } },
      { deleteStaged: { epoch: 5, worker: 'w1' } },
    ];
    for (const [i, step] of steps.entries()) {
      const startedAt = Date.now();
      if ('segment' in step) {
        const { queue, first, last } = step.segment;
        const key = segmentKey('v1', queue, first, last, SHA);
        await store.put(key, Buffer.from('segment'));
        model.segments.set(key, { queue, firstOffset: first, lastOffset: last, entries: [], writtenAtMs: startedAt });
      } else if ('deleteManifest' in step) {
        await store.delete(checkpointKey(step.deleteManifest));
        model.deleteManifest(step.deleteManifest, 'c0');
      } else if ('deleteStaged' in step) {
        const key = partitionKey(step.deleteStaged.epoch, step.deleteStaged.worker);
        await store.delete(key);
        model.deleteObject(key, 'c0');
      } else if ('deleteSegment' in step) {
        const { queue, first, last } = step.deleteSegment;
        const key = segmentKey('v1', queue, first, last, SHA);
        await store.delete(key);
        model.deleteObject(key, 'c0');
      } else if ('stage' in step) {
        const { epoch, worker, token } = step.stage;
        const roundId = `${token}-${epoch}-${worker}`;
        const key = partitionKey(epoch, worker);
        await store.put(key, await encodePartition(PartitionManifest.fromPartial({ formatVersion: 1, epoch, workerId: worker, leaderToken: token, roundId })));
        model.partitions.set(key, { sha256: model.nextSha(), epoch, workerId: worker, leaderToken: token, roundId, queues: [], writtenAtMs: startedAt });
      } else {
        const { epoch, token, roundId } = step.publish;
        const manifest = CheckpointManifest.fromPartial({ formatVersion: 1, epoch, leaderToken: token, roundId });
        await new Catalog(store).publish(manifest);
        model.putManifest(manifest, 'c0');
      }
      // A fresh catalog each time: the real one caches manifests, which holds because an epoch's
      // manifest never changes in a correct run (the simulation's fenced-writes invariant).
      const catalog = new Catalog(store);
      const epochs = await catalog.epochs();
      const latest = epochs.length > 0 ? await catalog.get(epochs[epochs.length - 1]) : undefined;
      const what = `after step ${i + 1} ${JSON.stringify(step)}`;
      expect(model.epochs(), what).toEqual(epochs);
      expect(model.latest() && { epoch: model.latest()!.epoch, roundId: model.latest()!.roundId, token: model.latest()!.leaderToken }, what).toEqual(
        latest && { epoch: latest.epoch, roundId: latest.roundId, token: latest.leaderToken },
      );
      expect(model.newestStaged(), what).toEqual(await catalog.newestStaged());
      // The listings garbage collection reads: the same keys, each with a time the store gave it
      // no earlier than a little before its put began (S3 times have whole seconds).
      const segments = await store.listObjects('segments/');
      const staged = await store.listObjects('staging/');
      expect(model.segmentObjects().map((o) => o.key).sort(), what).toEqual(segments.map((o) => o.key));
      expect(model.stagedObjects().map((o) => o.key).sort(), what).toEqual(staged.map((o) => o.key));
      for (const o of [...segments, ...staged]) {
        const modelled = [...model.segmentObjects(), ...model.stagedObjects()].find((m) => m.key === o.key)!;
        expect(o.lastModifiedMs, `${what}: ${o.key}`).toBeGreaterThanOrEqual(modelled.lastModifiedMs - 1_000);
        expect(o.lastModifiedMs, `${what}: ${o.key}`).toBeLessThanOrEqual(Date.now() + 1_000);
        expect(o.size).toBeGreaterThan(0);
      }
      for (const [key, staged] of model.partitions) {
        const real = await decodePartition(await store.get(key), key);
        expect({ epoch: staged.epoch, workerId: staged.workerId, leaderToken: staged.leaderToken, roundId: staged.roundId }, `${what}: ${key}`).toEqual({
          epoch: real.epoch,
          workerId: real.workerId,
          leaderToken: real.leaderToken,
          roundId: real.roundId,
        });
      }
    }
    expect(model.newestStaged()).toEqual({ epoch: 5, leaderToken: 7 });
    expect(model.epochs()).toEqual([3]);
  });
});
