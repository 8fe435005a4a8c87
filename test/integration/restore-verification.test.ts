/**
 * Damaged checkpoint data at restore, against a real cluster and broker, on a file store and on
 * S3: a queue with a corrupted segment and a queue with a missing segment fail with errors naming
 * the segment, the queue and the checkpoint, and their targets receive nothing — not even the
 * intact prefix before the damage — while a healthy queue of the same restore is restored exactly.
 */
import { WatchedStore } from '../helpers/watched-store.js';
import amqp from 'amqplib';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RestoreEvent, RestoreProgress } from '../../services/client/index.js';
import { silentLogger } from '../../services/core/infrastructure/log.js';
import { encodeSegment, gzipCodec } from '../../services/core/format/segment-codec.js';
import { segmentKey } from '../../services/core/store/keys.js';
import { LocalStore } from '../../services/core/store/local-store.js';
import { openStore } from '../../services/core/store/open-store.js';
import type { ObjectStore } from '../../services/core/store/object-store.js';
import { runRestoreTask } from '../../services/worker/restore-runner.js';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import type { CheckpointManifest, Record as JournalRecord, SegmentRef } from '../../services/gen/tidemark/v1/store.js';
import { readQueue } from '../helpers/broker.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';

const CLI = fileURLToPath(new URL('../../dist/services/cli/main.js', import.meta.url));
const EXCHANGE = 'app';
/** A gets a corrupted segment, B loses one, C stays intact. */
const A = 'v-a';
const B = 'v-b';
const C = 'v-c';
const QUEUES = [A, B, C];

describe.each([{ kind: 'file' as const }, { kind: 's3' as const }])('restore verification on a $kind store', ({ kind }) => {
  let services: TestServices;
  let vhost: string;
  let cluster: TestCluster;
  let store: ObjectStore;
  /** Bodies published to each queue, in publish order. */
  const published = new Map<string, string[]>(QUEUES.map((q) => [q, []]));
  let first: CheckpointManifest;
  let second: CheckpointManifest;
  /** The segments damaged in the store. */
  let corrupted: SegmentRef;
  let deleted: SegmentRef;

  async function publish(batch: string, perQueue: number): Promise<void> {
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    try {
      const channel = await connection.createConfirmChannel();
      for (const queue of QUEUES) {
        for (let i = 0; i < perQueue; i += 1) {
          const body = `${queue} ${batch} #${i}`;
          channel.publish(EXCHANGE, queue, Buffer.from(body), { messageId: body, persistent: true });
          published.get(queue)!.push(body);
        }
      }
      await channel.waitForConfirms();
    } finally {
      await connection.close();
    }
  }

  async function checkpoint(): Promise<CheckpointManifest> {
    const reply = await cluster.client.checkpoint(true);
    expect(reply.outcome, reply.reason).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    return cluster.client.getCheckpoint(String(reply.epoch));
  }

  /** The segment of `queue`'s own entry in `manifest` that starts last: later than the intact prefix. */
  function lastSegment(manifest: CheckpointManifest, queue: string): SegmentRef {
    const entry = manifest.queues.find((q) => q.definition?.name === queue)!;
    return [...entry.segments].sort((a, b) => b.firstOffset - a.firstOffset)[0];
  }

  /** Messages a queue holds, 0 if it does not exist. */
  async function messagesIn(queue: string): Promise<number> {
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    try {
      const channel = await connection.createChannel();
      channel.on('error', () => {});
      try {
        return (await channel.checkQueue(queue)).messageCount;
      } catch {
        return 0; // a 404 closes the channel: the queue was never declared
      }
    } finally {
      await connection.close().catch(() => {});
    }
  }

  async function restore(request: { checkpoint: string; prefix: string; queues?: string[] }): Promise<{ finished: Map<string, RestoreProgress>; events: RestoreEvent[] }> {
    const events: RestoreEvent[] = [];
    const finished = new Map<string, RestoreProgress>();
    for await (const event of cluster.client.restore(request)) {
      events.push(event);
      if (event.event?.$case === 'progress' && event.event.value.done) finished.set(event.event.value.sourceQueue, event.event.value);
    }
    return { finished, events };
  }

  beforeAll(async () => {
    services = await testServices();
    vhost = uniqueName(`tm-verify-${kind}`);
    const namespace = uniqueName('tmv');
    await createTestVhost(services.managementUrl, vhost);
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createChannel();
    await channel.assertExchange(EXCHANGE, 'direct', { durable: true });
    for (const queue of QUEUES) {
      await channel.assertQueue(queue, { durable: true });
      await channel.bindQueue(queue, EXCHANGE, queue);
    }
    await connection.close();
    cluster = await startTestCluster({
      services,
      namespace,
      protect: `${vhost}:v-*`,
      store: kind === 's3' ? { kind: 's3', bucket: uniqueName('tm-verify') } : { kind: 'file' },
      workers: 2,
      extraEnv: { TIDEMARK_LEASE_TIME: '3s', TIDEMARK_DISCOVERY_INTERVAL: '1s' },
    });
    await cluster.waitForStatus((s) => s.protectedQueues === QUEUES.length && s.workers.reduce((n, w) => n + w.queues, 0) === QUEUES.length, 'queues assigned');
    store = await openStore({
      store: cluster.storeUrl,
      s3Endpoint: services.s3.endpoint,
      s3AccessKey: services.s3.accessKey,
      s3SecretKey: services.s3.secretKey,
      s3Region: services.s3.region,
    });

    // Two checkpoints, so the damaged segments come after an intact prefix in other segments:
    // a restore that published as it read would put that prefix into the targets.
    await publish('one', 25);
    first = await checkpoint();
    await publish('two', 15);
    second = await checkpoint();
    expect(second.queues.map((q) => q.messages)).toEqual([40, 40, 40]);

    corrupted = lastSegment(second, A);
    deleted = lastSegment(second, B);
    const cutOfFirst = (queue: string) => first.queues.find((q) => q.definition?.name === queue)!.cutOffset;
    // At or past the first cut (the fence there may open the segment): the first checkpoint
    // needs none of it.
    expect(corrupted.firstOffset).toBeGreaterThanOrEqual(cutOfFirst(A));
    expect(deleted.firstOffset).toBeGreaterThanOrEqual(cutOfFirst(B));
    const bytes = Buffer.from(await store.get(corrupted.key));
    for (let i = bytes.length >> 1; i < Math.min(bytes.length, (bytes.length >> 1) + 4); i += 1) bytes[i] ^= 0xff;
    await store.put(corrupted.key, bytes);
    await store.delete(deleted.key);
  });

  afterAll(async () => {
    await store?.close();
    await cluster?.stop();
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
  });

  it('fails the queues with a corrupted or a missing segment, naming it, and publishes nothing of them; the intact queue restores exactly', async () => {
    const { finished, events } = await restore({ checkpoint: String(second.epoch), prefix: 'r1.' });
    const done = events.at(-1)?.event;
    expect(done?.$case).toBe('done');
    expect(done?.$case === 'done' && done.value.failedQueues).toBe(2);
    // Not even the intact first checkpoint's part of A and B reached their targets.
    expect(await messagesIn(`r1.${A}`)).toBe(0);
    expect(await messagesIn(`r1.${B}`)).toBe(0);

    const a = finished.get(A)!;
    expect(a.error).toContain(`segment ${corrupted.key} is corrupt: checksum mismatch`);
    expect(a.error).toContain(`checkpoint ${second.epoch} of ${vhost}/${A} failed verification`);
    expect(a.error).toContain(`Nothing was published to ${vhost}/r1.${A}`);
    expect(a.error).toContain(`whose cut offset for ${vhost}/${A} is at most ${corrupted.firstOffset}`);
    expect(a.confirmed).toBe(0);

    const b = finished.get(B)!;
    expect(b.error).toContain(`segment ${deleted.key} is missing from the store ${cluster.storeUrl}`);
    expect(b.error).toContain(`checkpoint ${second.epoch} of ${vhost}/${B} failed verification`);
    expect(b.error).toContain(`Nothing was published to ${vhost}/r1.${B}`);
    expect(b.confirmed).toBe(0);

    const c = finished.get(C)!;
    expect(c.error).toBe('');
    expect(c.confirmed).toBe(40);
    const restored = await readQueue(services.amqpUrl, vhost, `r1.${C}`, 'classic', 40);
    expect(restored.map((m) => m.body.toString())).toEqual(published.get(C));
  });

  it('an older checkpoint that does not need the damaged segments, as the error suggests, restores whole', async () => {
    const { finished } = await restore({ checkpoint: String(first.epoch), prefix: 'old.', queues: [A, B] });
    for (const queue of [A, B]) {
      expect(finished.get(queue)?.error).toBe('');
      const restored = await readQueue(services.amqpUrl, vhost, `old.${queue}`, 'classic', 25);
      expect(restored.map((m) => m.body.toString())).toEqual(published.get(queue)!.slice(0, 25));
    }
  });

  it('the CLI exits 3 and reports the failed queue in its --json progress event', async () => {
    const result = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [CLI, 'restore', '--checkpoint', String(second.epoch), '--queues', A, '--prefix', 'cli.', '--json'], { env: cluster.env }, (error, stdout, stderr) =>
        resolve({ code: error ? Number(error.code) : 0, stdout, stderr }),
      );
    });
    expect(result.code, result.stderr).toBe(3);
    const lines = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines.map((l) => l.type)).toEqual(['plan', 'progress', 'done']);
    expect(lines[1]).toMatchObject({ done: true, confirmed: 0, target: { vhost, queue: `cli.${A}` } });
    expect(String(lines[1].error)).toContain(corrupted.key);
    expect(lines[2]).toMatchObject({ failedQueues: 1, messages: 0 });
    expect(await messagesIn(`cli.${A}`)).toBe(0);
  });
});


describe('a segment that changes in the store between verification and publishing', () => {
  let services: TestServices;
  let vhost: string;
  let dir: string;

  beforeAll(async () => {
    services = await testServices();
    vhost = uniqueName('tm-verify-race');
    await createTestVhost(services.managementUrl, vhost);
    dir = await mkdtemp(join(tmpdir(), 'tidemark-verify-race-'));
  });

  afterAll(async () => {
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('stops the queue at the damage and says exactly how much of the prefix the target received', async () => {
    const inner = new LocalStore(dir, { fsync: false });
    await inner.init();
    const refs: SegmentRef[] = [];
    for (const [first, last] of [
      [0, 9],
      [10, 19],
    ]) {
      const records: JournalRecord[] = [];
      for (let offset = first; offset <= last; offset += 1) {
        records.push({ offset, exchange: 'app', routingKey: 'q', properties: { messageId: `m${offset}`, headers: undefined }, body: Buffer.from(`body ${offset}`), captureTimeMs: 0, fenceEpoch: 0 });
      }
      const { bytes, sha256 } = await encodeSegment({ formatVersion: 1, vhost, queue: 'q', journal: 'j', firstOffset: first, lastOffset: last, records }, gzipCodec);
      const key = segmentKey(vhost, 'q', first, last, sha256);
      await inner.put(key, bytes);
      refs.push({ key, firstOffset: first, lastOffset: last, records: 10, messages: 10, storedBytes: bytes.length, bodyBytes: 0, sha256, codec: 'gzip' });
    }
    // The second segment reads intact once (the verification pass), damaged after that.
    const store = new WatchedStore(inner, {
      onRead: (key, bytes, reads) => {
        // Intact for the verification pass, damaged when the publish pass reads it again.
        if (key !== refs[1].key || reads < 2) return bytes;
        const damaged = Buffer.from(bytes);
        damaged[damaged.length >> 1] ^= 0xff;
        return damaged;
      },
    });
    const progress: RestoreProgress[] = [];
    await runRestoreTask({
      task: {
        leaderToken: 1,
        restoreId: 'r7-race',
        checkpoint: 7,
        targetAmqpUrl: '',
        queues: [
          {
            source: { vhost, name: 'q', type: 'classic', durable: true, autoDelete: false, arguments: undefined, bindings: [] },
            targetVhost: vhost,
            targetName: 'race.q',
            startOffset: 0,
            cutOffset: 20,
            messages: 20,
            bodyBytes: 0,
            segments: refs,
            recreate: true,
            bind: false,
            append: false,
            resumeCount: 0,
            resumeAfterOffset: 0,
            resumeFromTail: false,
            rateLimit: 0,
            started: false,
            possiblyAcked: 0,
            assignment: '',
          },
        ],
        exchanges: [],
        originHeaders: true,
        confirmWindow: 0,
      },
      store,
      defaultAmqpUrl: services.amqpUrl,
      workerId: 'test-worker',
      confirmWindow: 4,
      log: silentLogger,
      emit: (p) => progress.push(p),
      signal: new AbortController().signal,
    });
    const last = progress.at(-1)!;
    expect(last.done).toBe(true);
    expect(last.confirmed).toBe(10);
    expect(last.error).toContain(`checkpoint 7 of ${vhost}/q changed in the store while it was being restored: segment ${refs[1].key} is corrupt: checksum mismatch`);
    expect(last.error).toContain(`${vhost}/race.q received the first 10 of this queue's 20 message(s), up to journal offset 9, and nothing after`);
    const restored = await readQueue(services.amqpUrl, vhost, 'race.q', 'classic', 10);
    expect(restored.map((m) => m.body.toString())).toEqual([...Array(10).keys()].map((i) => `body ${i}`));
  });
});
