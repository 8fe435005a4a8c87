/**
 * Encryption at rest end to end, against a real cluster and broker (docs/SECURITY.md): a cluster
 * with a master key stores every segment, partition and manifest sealed; a tampered segment, a
 * forged manifest, a decompression bomb and a wrong master key are each refused with a clear
 * error, and the restore target stays empty; `tidemark keys rotate` re-wraps the data keys without
 * touching a segment, and the checkpoint restores under the new key alone.
 */
import amqp from 'amqplib';
import { createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RestoreProgress } from '../../services/client/index.js';
import { masterKeyId } from '../../services/core/crypto/key-provider.js';
import { isSealed } from '../../services/core/crypto/vault.js';
import { silentLogger } from '../../services/core/infrastructure/log.js';
import { encodeSegment, gzipCodec, segmentRefOf } from '../../services/core/format/segment-codec.js';
import { checkpointKey, encodeManifest, segmentKey } from '../../services/core/store/keys.js';
import { openStore } from '../../services/core/store/open-store.js';
import { Catalog } from '../../services/core/state/catalog.js';
import type { ObjectStore, StoredObject } from '../../services/core/store/object-store.js';
import { runRestoreTask } from '../../services/worker/restore-runner.js';
import { RoundOutcome, type VerifyDone } from '../../services/gen/tidemark/v1/admin.js';
import { QueueRestore } from '../../services/gen/tidemark/v1/worker.js';
import type { CheckpointManifest, SegmentRef } from '../../services/gen/tidemark/v1/store.js';
import { readQueue } from '../helpers/broker.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';

const CLI = fileURLToPath(new URL('../../dist/services/cli/main.js', import.meta.url));
const EXCHANGE = 'app';
const A = 'e-a';
const B = 'e-b';
const QUEUES = [A, B];

describe('an encrypted cluster', () => {
  let services: TestServices;
  let vhost: string;
  let keyDir: string;
  let keyA: { path: string; key: Buffer };
  let keyB: { path: string; key: Buffer };
  let cluster: TestCluster;
  let store: ObjectStore;
  let plain: ObjectStore;
  const published = new Map<string, string[]>(QUEUES.map((q) => [q, []]));
  let second: CheckpointManifest;

  async function newKey(name: string): Promise<{ path: string; key: Buffer }> {
    const key = randomBytes(32);
    const path = join(keyDir, name);
    await writeFile(path, key.toString('hex'), { mode: 0o600 });
    return { path, key };
  }

  async function publish(batch: string, perQueue: number): Promise<void> {
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    try {
      const channel = await connection.createConfirmChannel();
      for (const queue of QUEUES) {
        for (let i = 0; i < perQueue; i += 1) {
          const body = `secret ${queue} ${batch} #${i}`;
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

  /** Messages a queue holds, 0 if it does not exist. */
  async function messagesIn(queue: string): Promise<number> {
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    try {
      const channel = await connection.createChannel();
      channel.on('error', () => {});
      try {
        return (await channel.checkQueue(queue)).messageCount;
      } catch {
        return 0;
      }
    } finally {
      await connection.close().catch(() => {});
    }
  }

  async function restore(request: { checkpoint: string; prefix: string; queues?: string[] }): Promise<Map<string, RestoreProgress>> {
    const finished = new Map<string, RestoreProgress>();
    for await (const event of cluster.client.restore(request)) {
      if (event.event?.$case === 'progress' && event.event.value.done) finished.set(event.event.value.sourceQueue, event.event.value);
    }
    return finished;
  }

  async function verify(id: string): Promise<VerifyDone> {
    let done: VerifyDone | undefined;
    for await (const event of cluster.client.verify(id, true)) if (event.event?.$case === 'done') done = event.event.value;
    return done!;
  }

  const segmentsOf = (manifest: CheckpointManifest, queue: string): SegmentRef[] => manifest.queues.find((q) => q.definition?.name === queue)!.segments.filter((s) => s.codec !== 'fences');

  beforeAll(async () => {
    services = await testServices();
    keyDir = await mkdtemp(join(tmpdir(), 'tidemark-enc-keys-'));
    keyA = await newKey('a.key');
    keyB = await newKey('b.key');
    vhost = uniqueName('tm-enc');
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
      namespace: uniqueName('tme'),
      protect: `${vhost}:e-*`,
      store: { kind: 'file' },
      workers: 2,
      extraEnv: { TIDEMARK_LEASE_TIME: '3s', TIDEMARK_DISCOVERY_INTERVAL: '1s', TIDEMARK_MASTER_KEY_FILE: keyA.path },
    });
    await cluster.waitForStatus((s) => s.protectedQueues === QUEUES.length && s.workers.reduce((n, w) => n + w.queues, 0) === QUEUES.length, 'queues assigned');
    store = await openStore({ store: cluster.storeUrl, s3Region: 'us-east-1', masterKeyFile: keyA.path });
    plain = await openStore({ store: cluster.storeUrl, s3Region: 'us-east-1' });
    await publish('one', 20);
    await checkpoint();
    await publish('two', 10);
    second = await checkpoint();
  });

  afterAll(async () => {
    await store?.close();
    await plain?.close();
    await cluster?.stop();
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
    if (keyDir) await rm(keyDir, { recursive: true, force: true });
  });

  it('stores every segment, partition and manifest sealed, with no message in the clear; verify says so; a restore gives the messages back', async () => {
    const objects = [...(await plain.list('segments/')), ...(await plain.list('staging/')), ...(await plain.list('checkpoints/'))];
    expect(objects.filter((k) => k.startsWith('segments/')).length).toBeGreaterThan(0);
    for (const key of objects) {
      const bytes = await plain.get(key);
      expect(isSealed(bytes), key).toBe(true);
      expect(bytes.includes(Buffer.from('secret e-')), key).toBe(false);
    }
    const done = await verify(String(second.epoch));
    expect(done).toMatchObject({ problems: 0, encrypted: true, plaintextManifests: 0, plaintextSegments: 0 });
    const finished = await restore({ checkpoint: String(second.epoch), prefix: 'ok.', queues: [B] });
    expect(finished.get(B)?.error).toBe('');
    const restored = await readQueue(services.amqpUrl, vhost, `ok.${B}`, 'classic', 30);
    expect(restored.map((m) => m.body.toString())).toEqual(published.get(B));
  });

  it('refuses a tampered segment, naming it, and publishes nothing of its queue', async () => {
    const victim = segmentsOf(second, A).at(-1)!;
    const original = await plain.get(victim.key);
    const tampered = Buffer.from(original);
    tampered[tampered.length - 40] ^= 0x01;
    await plain.put(victim.key, tampered);
    try {
      const finished = await restore({ checkpoint: String(second.epoch), prefix: 'tamper.', queues: [A] });
      expect(finished.get(A)?.error).toContain(`segment ${victim.key} is corrupt: checksum mismatch`);
      expect(finished.get(A)?.confirmed).toBe(0);
      expect(await messagesIn(`tamper.${A}`)).toBe(0);
    } finally {
      await plain.put(victim.key, original);
    }
  });

  it('refuses a forged plaintext manifest and a decompression bomb before anything is published; the coordinator keeps serving', async () => {
    // An attacker who can write the bucket: a plaintext checkpoint whose queue B holds their message.
    const records = [{ offset: 0, exchange: EXCHANGE, routingKey: B, properties: undefined, body: Buffer.from('injected'), captureTimeMs: 0, fenceEpoch: 0 }];
    const { bytes, sha256, codec } = await encodeSegment({ formatVersion: 1, vhost, queue: B, journal: 'j', firstOffset: 0, lastOffset: 0, records }, gzipCodec);
    const key = segmentKey(vhost, B, 0, 0, sha256);
    await plain.put(key, bytes);
    const forgedEpoch = second.epoch + 1_000;
    const entry = second.queues.find((q) => q.definition?.name === B)!;
    const forged: CheckpointManifest = {
      ...second,
      epoch: forgedEpoch,
      encryptedSinceEpoch: undefined,
      queues: [{ ...entry, startOffset: 0, headOffset: 0, cutOffset: 1, messages: 1, baseEpoch: 0, segments: [segmentRefOf(key, records, bytes, sha256, codec)] }],
    };
    await plain.put(checkpointKey(forgedEpoch), await encodeManifest(forged));
    try {
      const err = await restore({ checkpoint: 'latest', prefix: 'forged.', queues: [B] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toContain(`checkpoint manifest ${checkpointKey(forgedEpoch)} is not encrypted, but every checkpoint of this store from`);
      expect(await messagesIn(`forged.${B}`)).toBe(0);
    } finally {
      await plain.delete(checkpointKey(forgedEpoch));
    }

    // A few KiB that inflate to 64 MiB, where ListCheckpoints (read-only callers) reads it.
    const body = gzipSync(Buffer.alloc(64 * 1024 ** 2), { level: 9 });
    const bombEpoch = second.epoch + 2_000;
    await plain.put(checkpointKey(bombEpoch), Buffer.concat([Buffer.from('TMMANIF1'), createHash('sha256').update(body).digest(), body]));
    try {
      await expect(cluster.client.listCheckpoints()).rejects.toThrow(/decompresses to more than \d+ bytes/);
      const err = await restore({ checkpoint: String(bombEpoch), prefix: 'bomb.', queues: [B] }).catch((e: unknown) => e);
      expect((err as Error).message).toMatch(/decompresses to more than \d+ bytes/);
      expect(await messagesIn(`bomb.${B}`)).toBe(0);
    } finally {
      await plain.delete(checkpointKey(bombEpoch));
    }
    expect((await cluster.client.status()).leader).toBe(true);
    expect((await cluster.client.listCheckpoints()).map((c) => c.epoch)).toContain(second.epoch);
  });

  it('with a wrong master key, a restore names the key the data needs and publishes nothing', async () => {
    const wrongKey = await newKey('wrong.key');
    const wrong = await openStore({ store: cluster.storeUrl, s3Region: 'us-east-1', masterKeyFile: wrongKey.path });
    const entry = second.queues.find((q) => q.definition?.name === A)!;
    const progress: RestoreProgress[] = [];
    try {
      await runRestoreTask({
        task: {
          leaderToken: 1,
          restoreId: uniqueName('wrong-key'),
          checkpoint: second.epoch,
          targetAmqpUrl: '',
          queues: [
            QueueRestore.fromPartial({
              source: entry.definition!,
              targetVhost: vhost,
              targetName: 'wrongkey.a',
              startOffset: entry.startOffset,
              cutOffset: entry.cutOffset,
              messages: entry.messages,
              bodyBytes: entry.bodyBytes,
              segments: entry.segments,
              recreate: true,
            }),
          ],
          exchanges: [],
          originHeaders: true,
          confirmWindow: 0,
        },
        store: wrong,
        defaultAmqpUrl: services.amqpUrl,
        workerId: 'test-worker',
        confirmWindow: 4,
        log: silentLogger,
        emit: (p) => progress.push(p),
        signal: new AbortController().signal,
      });
    } finally {
      await wrong.close();
    }
    const last = progress.at(-1)!;
    expect(last.error).toContain(`is wrapped by master key ${masterKeyId(keyA.key)}, which is not configured (configured: ${masterKeyId(wrongKey.key)})`);
    expect(last.error).not.toContain(keyA.key.toString('hex'));
    expect(last.confirmed).toBe(0);
    expect(await messagesIn('wrongkey.a')).toBe(0);
  });

  it('"tidemark keys rotate" re-wraps the data keys, leaves every segment object as it was, and the checkpoint restores under the new key alone', async () => {
    const dataKeys = await plain.list('keys/');
    expect(dataKeys.length).toBeGreaterThanOrEqual(2); // the coordinator's, and each capturing worker's
    const before = new Map((await plain.listObjects('segments/')).map((o): [string, StoredObject] => [o.key, o]));
    const bytesBefore = new Map(await Promise.all([...before.keys()].map(async (k) => [k, await plain.get(k)] as const)));
    await new Promise((resolve) => setTimeout(resolve, 1_100));

    // Every process gets the new key, with the old one as previous, as docs/SECURITY.md says.
    const rotating = { TIDEMARK_MASTER_KEY_FILE: keyB.path, TIDEMARK_MASTER_KEY_PREVIOUS_FILES: keyA.path };
    await cluster.kill('coordinator');
    cluster.restart('coordinator', rotating);
    await cluster.waitForStatus((s) => s.leader && s.workers.reduce((n, w) => n + w.queues, 0) === QUEUES.length, 'the restarted coordinator leads');
    const result = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [CLI, 'keys', 'rotate', '--json'], { env: cluster.env }, (error, stdout, stderr) => resolve({ code: error ? Number(error.code) : 0, stdout, stderr }));
    });
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as { masterKeyId: string; rewrapped: number; failed: unknown[] };
    expect(report).toMatchObject({ masterKeyId: masterKeyId(keyB.key), failed: [] });
    expect(report.rewrapped).toBe(dataKeys.length);
    expect(result.stdout).not.toContain(keyB.key.toString('hex'));

    const after = await plain.listObjects('segments/');
    expect(after.map((o) => o.key)).toEqual([...before.keys()]);
    for (const o of after) {
      expect(o.lastModifiedMs, o.key).toBe(before.get(o.key)!.lastModifiedMs);
      expect((await plain.get(o.key)).equals(bytesBefore.get(o.key)!), o.key).toBe(true);
    }

    // The new key alone from now on: workers restarted without the old one read and restore.
    for (const worker of ['worker-1', 'worker-2']) {
      await cluster.kill(worker);
      cluster.restart(worker, { TIDEMARK_MASTER_KEY_FILE: keyB.path });
    }
    await cluster.waitForStatus((s) => s.workers.length === 2 && s.workers.reduce((n, w) => n + w.queues, 0) === QUEUES.length, 'workers back with the new key');
    const finished = await restore({ checkpoint: String(second.epoch), prefix: 'rotated.', queues: [A] });
    expect(finished.get(A)?.error).toBe('');
    const restored = await readQueue(services.amqpUrl, vhost, `rotated.${A}`, 'classic', 30);
    expect(restored.map((m) => m.body.toString())).toEqual(published.get(A));
    // No master key in any process's log, nor in a data key object.
    const logs = await readFile(cluster.logFile, 'utf8');
    for (const { key } of [keyA, keyB]) {
      for (const spelled of [key.toString('hex'), key.toString('base64')]) {
        expect(logs).not.toContain(spelled);
        for (const k of await plain.list('keys/')) expect((await plain.get(k)).toString()).not.toContain(spelled);
      }
    }
    // And a store reader with only the old key is told which key it needs.
    const old = await openStore({ store: cluster.storeUrl, s3Region: 'us-east-1', masterKeyFile: keyA.path });
    try {
      const err = await new Catalog(old).get(second.epoch).catch((e: unknown) => e);
      expect((err as Error).message).toContain(`wrapped by master key ${masterKeyId(keyB.key)}`);
    } finally {
      await old.close();
    }
  });
});
