/**
 * Rounds over an idle queue write nothing to the store. Each round still puts a fence into its
 * journal, and a cut needs every offset below it covered, so an idle queue notes its fences as a
 * fence range (a SegmentRef with no object behind it). Checkpoints that end in fence ranges
 * must still restore exactly, verify whole, and resume after a worker restart.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FENCE_RANGE_CODEC, isFenceRange } from '../../services/core/format/segment-codec.js';
import { segmentPrefix } from '../../services/core/store/keys.js';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import type { CheckpointManifest } from '../../services/gen/tidemark/v1/store.js';
import { runCli } from '../helpers/cli.js';
import type { TestCluster } from '../helpers/cluster.js';
import { RoundRobinProducer } from '../helpers/producers.js';
import { type TestServices } from '../helpers/services.js';
import { startProtectedVhost, type ProtectedVhost } from '../helpers/protected-vhost.js';
import { RestoredQueues, restoreWithPrefix } from '../helpers/verify.js';

const QUEUES = [
  { name: 'idle-a', type: 'classic' },
  { name: 'idle-b', type: 'quorum' },
] as const;
const PER_QUEUE = 25;
const IDLE_ROUNDS = 5;

let services: TestServices;
let vhost: string;
let cluster: TestCluster;
let setup: ProtectedVhost | undefined;

async function publish(queues: string[], count: number): Promise<void> {
  const producer = new RoundRobinProducer(services.amqpUrl, vhost, 'idle', queues, { maxMessages: count });
  producer.start();
  await producer.finished();
  expect(producer.total()).toBe(count);
}

async function checkpoint(): Promise<CheckpointManifest> {
  const round = await cluster.client.checkpoint(true);
  expect(round.outcome, round.reason).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
  return cluster.client.getCheckpoint(String(round.epoch));
}

/** The segment objects of a queue in the file store. */
async function storedSegments(queue: string): Promise<string[]> {
  const dir = join(fileURLToPath(cluster.storeUrl), segmentPrefix(vhost, queue));
  return (await readdir(dir).catch(() => [] as string[])).filter((name) => name.endsWith('.seg'));
}

describe('rounds over idle queues', () => {
  beforeAll(async () => {
    setup = await startProtectedVhost({ exchange: 'idle', queues: QUEUES, workers: 1 });
    ({ services, vhost, cluster } = setup);
  });

  afterAll(async () => {
    await setup?.stop();
  });

  it('store nothing for an idle queue, yet checkpoint, verify and restore it exactly', async () => {
    await publish(['idle-a', 'idle-b'], 2 * PER_QUEUE);
    await checkpoint();
    const afterData = await storedSegments('idle-a');
    expect(afterData.length, 'idle-a has a segment of its messages').toBeGreaterThan(0);

    // idle-a gets nothing more; idle-b keeps getting messages between rounds.
    let latest: CheckpointManifest | undefined;
    for (let i = 0; i < IDLE_ROUNDS; i += 1) {
      await publish(['idle-b'], 3);
      latest = await checkpoint();
    }
    expect(await storedSegments('idle-a'), 'no object written for idle rounds').toEqual(afterData);
    const idle = latest!.queues.find((q) => q.definition!.name === 'idle-a')!;
    expect(idle.messages).toBe(PER_QUEUE);
    // Its fences are noted as fence ranges; the data segments of idle-b are real objects.
    const refs = await (async () => {
      const all = [];
      for (let e = 1; e <= latest!.epoch; e += 1) all.push(...(await cluster.client.getCheckpoint(String(e))).queues.find((q) => q.definition!.name === 'idle-a')!.segments);
      return all;
    })();
    expect(refs.filter(isFenceRange).length).toBeGreaterThanOrEqual(2);
    expect(refs.filter(isFenceRange).every((r) => r.codec === FENCE_RANGE_CODEC && r.messages === 0 && r.storedBytes === 0)).toBe(true);

    const verified = await runCli(['verify', String(latest!.epoch), '--full', '--json'], cluster.env);
    expect(verified.code, verified.stderr).toBe(0);
    expect(JSON.parse(verified.stdout.trim().split('\n').pop()!)).toMatchObject({ type: 'done', problems: 0 });

    await restoreWithPrefix(cluster.client, latest!, 'r-');
    const restored = new RestoredQueues(services.amqpUrl, vhost);
    await restored.expectExactPrefixes(latest!, 'r-');
  }, 180_000);

  it('resumes an idle queue from a cut after fence ranges when its worker restarts', async () => {
    await checkpoint();
    await checkpoint();
    await cluster.kill('worker-1');
    cluster.restart('worker-1');
    await cluster.waitForStatus((s) => s.workers.some((w) => w.reachable && w.queues === 2), 'the worker back with both queues');
    await publish(['idle-a'], 4);
    const manifest = await checkpoint();
    expect(manifest.queues.find((q) => q.definition!.name === 'idle-a')!.messages).toBe(PER_QUEUE + 4);
    await restoreWithPrefix(cluster.client, manifest, 's-');
    await new RestoredQueues(services.amqpUrl, vhost).expectExactPrefixes(manifest, 's-');
  }, 180_000);
});
