import { describe, expect, it } from 'vitest';
import type { CheckpointManifest, PartitionManifest } from '../../services/gen/tidemark/v1/store.js';
import { CorruptDataError } from '../../services/core/errors.js';
import {
  checkpointKey,
  decodeManifest,
  decodePartition,
  encodeManifest,
  encodePartition,
  parseCheckpointKey,
  partitionKey,
  stagingPrefix,
} from '../../services/core/store/keys.js';

const manifest: CheckpointManifest = {
  formatVersion: 1,
  roundId: 'r-1',
  epoch: 42,
  parentEpoch: 41,
  full: false,
  startedAtMs: 1_700_000_000_000,
  committedAtMs: 1_700_000_000_500,
  leaderToken: 9,
  coordinatorId: 'coord-a',
  fences: [{ vhost: '/', exchange: 'tidemark.fence', publishedAtMs: 1_700_000_000_001 }],
  exchanges: [{ vhost: '/', name: 'orders', type: 'topic', durable: true, autoDelete: false, internal: false, arguments: { entries: [] } }],
  queues: [
    {
      definition: {
        vhost: '/',
        name: 'orders.eu',
        type: 'quorum',
        durable: true,
        autoDelete: false,
        arguments: { entries: [{ key: 'x-queue-type', value: { kind: { $case: 'stringValue', value: 'quorum' } } }] },
        bindings: [{ source: 'orders', routingKey: 'eu.#', arguments: { entries: [] } }],
      },
      journal: 'tidemark.journal.orders.eu',
      startOffset: 0,
      cutOffset: 120,
      messages: 119,
      bodyBytes: 5000,
      segments: [
        { key: 'segments/%2F/orders.eu/x.seg', firstOffset: 0, lastOffset: 120, records: 121, messages: 119, storedBytes: 800, bodyBytes: 5000, sha256: 'ab'.repeat(32), codec: 'gzip' },
      ],
      baseEpoch: 40,
      workerId: 'worker-1',
      incomplete: [{ epoch: 39, reason: 'the broker restarted', detectedAtMs: 1_699_999_999_000, afterOffset: 80 }],
      headOffset: 20, headMessages: 5, possiblyAcked: 2, headBasis: 'ready 3 + unacknowledged bound 2 at the marker', predating: 0, outsideCut: { sinceEpoch: 39, sinceMs: 1_699_999_999_000, reason: 'journal replaced' }, historyOffset: 10, historyMessages: 2, headKnown: true,
    },
  ],
  messages: 119,
  bodyBytes: 5000,
};

const partition: PartitionManifest = {
  formatVersion: 1,
  roundId: 'r-42',
  epoch: 42,
  workerId: 'worker-1',
  leaderToken: 9,
  queues: manifest.queues,
  preparedAtMs: 1_700_000_000_300,
};

describe('store keys', () => {
  it('names checkpoint manifests by zero-padded epoch and parses them back', () => {
    expect(checkpointKey(42)).toBe('checkpoints/00000000000000000042.manifest');
    expect(parseCheckpointKey(checkpointKey(42))).toBe(42);
    expect(parseCheckpointKey(checkpointKey(Number.MAX_SAFE_INTEGER))).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('ignores keys that are not checkpoint manifests', () => {
    for (const key of ['checkpoints/42.manifest', 'checkpoints/00000000000000000042.manifest.tmp', 'x/checkpoints/00000000000000000042.manifest', 'checkpoints/99999999999999999999.manifest']) {
      expect(parseCheckpointKey(key)).toBeUndefined();
    }
  });

  it('stages partitions per epoch and encoded worker id', () => {
    expect(partitionKey(7, 'worker/1')).toBe('staging/00000000000000000007/worker%2F1.partition');
    expect(partitionKey(7, 'w').startsWith(stagingPrefix(7))).toBe(true);
  });
});

describe('manifest framing', () => {
  const KEY = checkpointKey(42);

  it('round-trips a checkpoint manifest with the TMMANIF1 magic', async () => {
    const bytes = await encodeManifest(manifest);
    expect(bytes.subarray(0, 8).toString('ascii')).toBe('TMMANIF1');
    expect(await decodeManifest(bytes, KEY)).toEqual(manifest);
  });

  it('round-trips a partition manifest with the TMPART01 magic', async () => {
    const bytes = await encodePartition(partition);
    expect(bytes.subarray(0, 8).toString('ascii')).toBe('TMPART01');
    expect(await decodePartition(bytes, partitionKey(42, 'worker-1'))).toEqual(partition);
  });

  it('rejects every single flipped byte, naming the key', async () => {
    const bytes = await encodeManifest(manifest);
    for (let i = 0; i < bytes.length; i++) {
      const damaged = Buffer.from(bytes);
      damaged[i] ^= 0x40;
      const err = await decodeManifest(damaged, KEY).catch((e: unknown) => e);
      expect(err, `byte ${i}`).toBeInstanceOf(CorruptDataError);
      expect((err as CorruptDataError).key).toBe(KEY);
      expect((err as Error).message).toContain(KEY);
    }
  });

  it('says which check failed', async () => {
    const bytes = await encodeManifest(manifest);
    const body = Buffer.from(bytes);
    body[body.length - 3] ^= 1;
    await expect(decodeManifest(body, KEY)).rejects.toThrow(/checksum mismatch/);
    await expect(decodeManifest(bytes.subarray(0, 20), KEY)).rejects.toThrow(/shorter than its header/);
    await expect(decodePartition(bytes, 'staging/x.partition')).rejects.toThrow(/magic is "TMMANIF1", expected "TMPART01"/);
  });

  it('refuses a manifest from a newer format version', async () => {
    const bytes = await encodeManifest({ ...manifest, formatVersion: 2 });
    await expect(decodeManifest(bytes, KEY)).rejects.toThrow(/format version 2 is newer/);
  });
});
