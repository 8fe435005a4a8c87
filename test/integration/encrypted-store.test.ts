/**
 * Encryption at rest and authenticated objects (docs/SECURITY.md), on the local file store and on
 * the S3 server: what is stored reveals no message, an altered or forged segment or manifest is
 * refused, a wrong master key is named, a decompression bomb or an oversized object is refused
 * unread, rotating the master key leaves every segment object as it was, and a store written
 * before encryption stays readable.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadMasterKeys, masterKeyId } from '../../services/core/crypto/key-provider.js';
import { KEYS_PREFIX, isSealed } from '../../services/core/crypto/vault.js';
import { CorruptDataError, KeyUnavailableError, OversizedObjectError, UnauthenticatedDataError } from '../../services/core/errors.js';
import { encodeSegment, gzipCodec, segmentRefOf, sha256Hex } from '../../services/core/format/segment-codec.js';
import { readPrefix, verifyPrefix } from '../../services/core/format/segment-reader.js';
import { Catalog } from '../../services/core/state/catalog.js';
import { checkpointKey, decodePartition, encodePartition, partitionKey, segmentKey } from '../../services/core/store/keys.js';
import { LocalStore, S3Store, type ObjectStore } from '../../services/core/store/index.js';
import { openStore } from '../../services/core/store/open-store.js';
import { pruneStore } from '../../services/coordinator/store-gc.js';
import { silentLogger } from '../../services/core/infrastructure/log.js';
import type { CheckpointManifest, Record as JournalRecord, SegmentRef } from '../../services/gen/tidemark/v1/store.js';
import { testServices, uniqueName } from '../helpers/services.js';

const VHOST = 'prod';
const QUEUE = 'orders';
const SECRET_BODY = 'card 4111-1111-1111-1111';

let keyDir: string;
/** Writes a fresh owner-only master key file; returns its path and the key. */
async function keyFile(): Promise<{ path: string; key: Buffer }> {
  const key = randomBytes(32);
  const path = join(keyDir, `${uniqueName('mk')}.key`);
  await writeFile(path, `${key.toString('base64')}\n`, { mode: 0o600 });
  return { path, key };
}

function records(first: number, count: number, body = SECRET_BODY): JournalRecord[] {
  return Array.from({ length: count }, (_, i) => ({
    offset: first + i,
    exchange: 'app',
    routingKey: QUEUE,
    properties: undefined,
    body: Buffer.from(`${body} #${first + i}`),
    captureTimeMs: 1_700_000_000_000,
    fenceEpoch: 0,
  }));
}

/** Writes one segment as a worker does; returns its ref. */
async function writeSegment(store: ObjectStore, first: number, count: number): Promise<SegmentRef> {
  const recs = records(first, count);
  const last = first + count - 1;
  const { bytes, sha256, codec } = await encodeSegment({ formatVersion: 1, vhost: VHOST, queue: QUEUE, journal: 'j', firstOffset: first, lastOffset: last, records: recs }, gzipCodec, store.vault);
  const key = segmentKey(VHOST, QUEUE, first, last, sha256);
  await store.put(key, bytes);
  return segmentRefOf(key, recs, bytes, sha256, codec);
}

function manifestOf(epoch: number, segments: SegmentRef[]): CheckpointManifest {
  const messages = segments.reduce((n, s) => n + s.messages, 0);
  return {
    formatVersion: 1,
    epoch,
    parentEpoch: epoch - 1,
    full: true,
    startedAtMs: 1,
    committedAtMs: 2,
    leaderToken: 1,
    coordinatorId: 'c',
    fences: [],
    exchanges: [],
    messages,
    bodyBytes: 0,
    roundId: `r${epoch}`,
    queues: [
      {
        definition: { vhost: VHOST, name: QUEUE, type: 'classic', durable: true, autoDelete: false, arguments: undefined, bindings: [] },
        journal: 'j',
        startOffset: segments.length === 0 ? 0 : segments[0].firstOffset,
        cutOffset: segments.length === 0 ? 0 : segments[segments.length - 1].lastOffset + 1,
        messages,
        bodyBytes: 0,
        segments,
        baseEpoch: 0,
        workerId: 'w',
        incomplete: [],
        headOffset: 0,
        headMessages: 0,
        possiblyAcked: 0,
        headBasis: '',
        predating: 0,
        outsideCut: undefined,
        historyOffset: 0,
        historyMessages: 0,
        headKnown: false,
      },
    ],
  };
}

async function bodiesOf(store: ObjectStore, manifest: CheckpointManifest): Promise<string[]> {
  const entry = manifest.queues[0];
  const bodies: string[] = [];
  for await (const r of readPrefix(store, { vhost: VHOST, queue: QUEUE, startOffset: entry.startOffset, cutOffset: entry.cutOffset, segments: entry.segments })) bodies.push(r.body.toString());
  return bodies;
}

interface Fixture {
  name: string;
  /** A fresh empty store root (a directory, or a prefix in the test bucket) and its plain store. */
  open(): Promise<{ plain: ObjectStore; withKeys: (files: { current: string; previous?: string[] }) => Promise<ObjectStore>; cleanup(): Promise<void> }>;
}

const bucket = uniqueName('tm-enc');

const local: Fixture = {
  name: 'local file store',
  async open() {
    const dir = await mkdtemp(join(tmpdir(), 'tidemark-enc-'));
    const root = join(dir, 'store');
    const opened: ObjectStore[] = [];
    return {
      plain: new LocalStore(root),
      async withKeys({ current, previous }) {
        const store = await openStore({ store: `file://${root}`, s3Region: 'us-east-1', masterKeyFile: current, masterKeyPreviousFiles: previous?.join(',') });
        opened.push(store);
        return store;
      },
      async cleanup() {
        for (const s of opened) await s.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  },
};

const s3: Fixture = {
  name: 'S3 server',
  async open() {
    const services = await testServices();
    const prefix = uniqueName('run');
    const plain = new S3Store({ bucket, prefix, ...services.s3 });
    await plain.ensureBucket();
    const opened: ObjectStore[] = [plain];
    return {
      plain,
      async withKeys({ current, previous }) {
        const store = await openStore({
          store: `s3://${bucket}/${prefix}`,
          s3Endpoint: services.s3.endpoint,
          s3AccessKey: services.s3.accessKey,
          s3SecretKey: services.s3.secretKey,
          s3Region: services.s3.region,
          masterKeyFile: current,
          masterKeyPreviousFiles: previous?.join(','),
        });
        opened.push(store);
        return store;
      },
      async cleanup() {
        for (const key of await plain.list('')) await plain.delete(key);
        for (const s of opened) await s.close();
      },
    };
  },
};

beforeAll(async () => {
  keyDir = await mkdtemp(join(tmpdir(), 'tidemark-keys-'));
});
afterAll(async () => {
  await rm(keyDir, { recursive: true, force: true });
});

describe.each([local, s3])('encrypted store on the $name', (fixture) => {
  /** A fresh store root per test: one store has one master key (and its rotations). */
  let env: Awaited<ReturnType<Fixture['open']>>;
  beforeEach(async () => {
    env = await fixture.open();
  });
  afterEach(async () => {
    await env?.cleanup();
  });

  it('stores segments, partitions and manifests sealed: no message body or queue name in the stored bytes, and they read back whole', async () => {
    const { path } = await keyFile();
    const store = await env.withKeys({ current: path });
    const segments = [await writeSegment(store, 0, 20), await writeSegment(store, 20, 10)];
    const catalog = new Catalog(store);
    await catalog.publish(manifestOf(1, segments));
    const pkey = partitionKey(1, 'w');
    await store.put(pkey, await encodePartition({ formatVersion: 1, epoch: 1, workerId: 'w', leaderToken: 1, queues: manifestOf(1, segments).queues, preparedAtMs: 1, roundId: 'r1' }, store.vault));

    for (const key of [...segments.map((s) => s.key), checkpointKey(1), pkey]) {
      const stored = await env.plain.get(key);
      expect(isSealed(stored), key).toBe(true);
      expect(stored.includes(Buffer.from('card 4111')), key).toBe(false);
      expect(stored.includes(Buffer.from(QUEUE)), key).toBe(false);
    }
    // The recorded checksum is over the stored (sealed) bytes.
    expect(sha256Hex(await env.plain.get(segments[0].key))).toBe(segments[0].sha256);
    expect((await decodePartition(await store.get(pkey), pkey, store.vault)).queues[0].definition?.name).toBe(QUEUE);

    const fresh = new Catalog(await env.withKeys({ current: path }));
    const manifest = await fresh.get(1);
    expect(await fresh.protection(1)).toBe('encrypted');
    expect(manifest.encryptedSinceEpoch).toBe(1);
    expect(await bodiesOf(fresh.store, manifest)).toEqual(records(0, 30).map((r) => r.body.toString()));
  });

  it('seals a segment uploaded again under a fresh nonce and a new name, and both read back the same', async () => {
    const { path } = await keyFile();
    const store = await env.withKeys({ current: path });
    const a = await writeSegment(store, 100, 5);
    const b = await writeSegment(store, 100, 5);
    // A retried flush leaves the first object unreferenced, for garbage collection to sweep.
    expect(b.key).not.toBe(a.key);
    expect(b.sha256).not.toBe(a.sha256);
    const spec = { vhost: VHOST, queue: QUEUE, startOffset: 100, cutOffset: 105 };
    for (const ref of [a, b]) expect(await verifyPrefix(store, { ...spec, segments: [ref] })).toMatchObject({ segments: 1, messages: 5 });
  });

  it('refuses a segment altered in the store, even when its manifest were forged to match, and names it', async () => {
    const { path } = await keyFile();
    const store = await env.withKeys({ current: path });
    const ref = await writeSegment(store, 200, 10);
    const bytes = Buffer.from(await store.get(ref.key));
    bytes[bytes.length - 30] ^= 0x01;
    await env.plain.put(ref.key, bytes);
    const spec = { vhost: VHOST, queue: QUEUE, startOffset: 200, cutOffset: 210 };
    // The manifest's sha256 catches it first...
    await expect(verifyPrefix(store, { ...spec, segments: [ref] })).rejects.toThrow(/checksum mismatch/);
    // ...and with the checksum forged too, the authentication tag does.
    const forged = { ...ref, sha256: sha256Hex(bytes) };
    const err = await verifyPrefix(store, { ...spec, segments: [forged] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnauthenticatedDataError);
    expect((err as Error).message).toContain(`segment ${ref.key} failed authentication`);
  });

  it('refuses a sealed manifest that was altered or copied to another epoch, and a plaintext one planted after encryption began', async () => {
    const { path } = await keyFile();
    const store = await env.withKeys({ current: path });
    const catalog = new Catalog(store);
    await catalog.publish(manifestOf(11, [await writeSegment(store, 300, 5)]));
    await catalog.publish(manifestOf(12, [await writeSegment(store, 305, 5)]));

    const altered = Buffer.from(await env.plain.get(checkpointKey(12)));
    altered[altered.length - 20] ^= 0x01;
    await env.plain.put(checkpointKey(12), altered);
    await expect(new Catalog(store).get(12)).rejects.toThrow(UnauthenticatedDataError);
    // A damaged newest manifest does not stop the next checkpoint, which keeps the store's floor.
    await new Catalog(store).publish(manifestOf(20, []));
    expect((await new Catalog(store).get(20)).encryptedSinceEpoch).toBe(11);
    await env.plain.delete(checkpointKey(20));

    await env.plain.put(checkpointKey(13), await env.plain.get(checkpointKey(11)));
    await expect(new Catalog(store).get(13)).rejects.toThrow(/holds checkpoint 11, not 13: it was copied or forged/);

    // A plaintext manifest, as anyone who can write the bucket could make one.
    await new Catalog(env.plain).publish(manifestOf(14, []));
    const err = await new Catalog(store).get(14).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnauthenticatedDataError);
    expect((err as Error).message).toMatch(/is not encrypted, but every checkpoint of this store from \d+ on is/);
    for (const epoch of [12, 13, 14]) await env.plain.delete(checkpointKey(epoch));
  });

  it('with a wrong master key, says which master key the data needs, and reads nothing', async () => {
    const right = await keyFile();
    const wrong = await keyFile();
    const store = await env.withKeys({ current: right.path });
    const ref = await writeSegment(store, 400, 3);
    const other = await env.withKeys({ current: wrong.path });
    const err = await verifyPrefix(other, { vhost: VHOST, queue: QUEUE, startOffset: 400, cutOffset: 403, segments: [ref] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeyUnavailableError);
    expect((err as KeyUnavailableError).keyId).toBe(masterKeyId(right.key));
    expect((err as Error).message).toContain(`is wrapped by master key ${masterKeyId(right.key)}, which is not configured (configured: ${masterKeyId(wrong.key)})`);
    expect((err as Error).message).not.toContain(right.key.toString('base64'));
    // Without any key, a sealed object is refused with what to configure.
    await expect(verifyPrefix(env.plain, { vhost: VHOST, queue: QUEUE, startOffset: 400, cutOffset: 403, segments: [ref] })).rejects.toThrow(/is encrypted, but no master key is configured: set TIDEMARK_MASTER_KEY_FILE/);
  });

  it('refuses a decompression bomb (manifest and segment) and an object larger than its manifest records, before reading it whole', async () => {
    const { path } = await keyFile();
    const store = await env.withKeys({ current: path });
    // A plaintext manifest frame around 64 MiB of zeros: ~64 KiB stored.
    const body = gzipSync(Buffer.alloc(64 * 1024 ** 2), { level: 9 });
    const { createHash } = await import('node:crypto');
    const bomb = Buffer.concat([Buffer.from('TMMANIF1'), createHash('sha256').update(body).digest(), body]);
    await env.plain.put(checkpointKey(1_000), bomb);
    const err = await new Catalog(env.plain).get(1_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OversizedObjectError);
    expect((err as Error).message).toMatch(/checkpoint manifest checkpoints\/00000000000000001000.manifest decompresses to more than \d+ bytes/);
    await env.plain.delete(checkpointKey(1_000));

    // A segment whose ref promises 1 record of 10 bytes but inflates to 8 MiB.
    const segBomb = gzipSync(Buffer.alloc(8 * 1024 ** 2), { level: 9 });
    const key = segmentKey(VHOST, QUEUE, 500, 500, sha256Hex(segBomb));
    await env.plain.put(key, segBomb);
    const ref: SegmentRef = { key, firstOffset: 500, lastOffset: 500, records: 1, messages: 1, storedBytes: segBomb.length, bodyBytes: 10, sha256: sha256Hex(segBomb), codec: 'gzip' };
    await expect(verifyPrefix(store, { vhost: VHOST, queue: QUEUE, startOffset: 500, cutOffset: 501, segments: [ref] })).rejects.toThrow(/segment .* decompresses to more than \d+ bytes/);

    // The same name holding more bytes than the manifest records is not read.
    const small = await writeSegment(store, 600, 2);
    await env.plain.put(small.key, Buffer.concat([await env.plain.get(small.key), Buffer.alloc(1024)]));
    const big = await verifyPrefix(store, { vhost: VHOST, queue: QUEUE, startOffset: 600, cutOffset: 602, segments: [small] }).catch((e: unknown) => e);
    expect(big).toBeInstanceOf(OversizedObjectError);
    expect((big as Error).message).toContain(`more than the ${small.storedBytes} bytes it may be`);
  });

  it('rotating the master key re-wraps only the data keys: segment objects keep their bytes and times, and the checkpoint reads under the new key alone', async () => {
    const old = await keyFile();
    const next = await keyFile();
    const before = await env.withKeys({ current: old.path });
    const segments = [await writeSegment(before, 700, 10), await writeSegment(before, 710, 10)];
    await new Catalog(before).publish(manifestOf(21, segments));
    const listed = async (prefix: string) => new Map((await env.plain.listObjects(prefix)).map((o) => [o.key, o]));
    const segmentsBefore = await listed('segments/');
    const bytesBefore = new Map(await Promise.all([...segmentsBefore.keys()].map(async (k) => [k, await env.plain.get(k)] as const)));
    const manifestBefore = await env.plain.get(checkpointKey(21));
    await new Promise((resolve) => setTimeout(resolve, 1_100)); // past the stores' mtime resolution

    const rotating = await env.withKeys({ current: next.path, previous: [old.path] });
    const report = await rotating.vault!.rotate();
    expect(report.failed).toEqual([]);
    expect(report.rewrapped).toBeGreaterThanOrEqual(1);
    expect(report.masterKeyId).toBe(masterKeyId(next.key));
    expect((await rotating.vault!.rotate()).rewrapped).toBe(0); // idempotent

    const segmentsAfter = await listed('segments/');
    expect([...segmentsAfter.keys()]).toEqual([...segmentsBefore.keys()]);
    for (const [key, o] of segmentsAfter) {
      expect(o.lastModifiedMs, key).toBe(segmentsBefore.get(key)!.lastModifiedMs);
      expect((await env.plain.get(key)).equals(bytesBefore.get(key)!), key).toBe(true);
    }
    expect((await env.plain.get(checkpointKey(21))).equals(manifestBefore)).toBe(true);

    // Only the new key configured: everything reads; only the old one: refused, naming the new key.
    const after = new Catalog(await env.withKeys({ current: next.path }));
    expect(await bodiesOf(after.store, await after.get(21))).toEqual(records(700, 20).map((r) => r.body.toString()));
    const stale = await new Catalog(await env.withKeys({ current: old.path })).get(21).catch((e: unknown) => e);
    expect(stale).toBeInstanceOf(KeyUnavailableError);
    expect((stale as Error).message).toContain(masterKeyId(next.key));
    expect((await env.plain.list(KEYS_PREFIX)).length).toBeGreaterThan(0);
  });
});

describe('garbage collection of an encrypted store', () => {
  it('deletes dropped checkpoints and the segments only they needed, never a data key object', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tidemark-enc-gc-'));
    try {
      const { path } = await keyFile();
      const store = await openStore({ store: `file://${join(dir, 'store')}`, s3Region: 'us-east-1', masterKeyFile: path });
      const catalog = new Catalog(store);
      const old = await writeSegment(store, 0, 5);
      await catalog.publish({ ...manifestOf(1, [old]), committedAtMs: Date.now() });
      // A second process with its own data key writes the segment of the kept checkpoint.
      const other = await openStore({ store: `file://${join(dir, 'store')}`, s3Region: 'us-east-1', masterKeyFile: path });
      const kept = await writeSegment(other, 5, 5);
      // Committed within the grace period of the clock below, its segments written before it.
      await catalog.publish({ ...manifestOf(2, [kept]), parentEpoch: 1, committedAtMs: Date.now() + 8_000 });
      const keysBefore = await store.list(KEYS_PREFIX);
      expect(keysBefore).toHaveLength(2);

      const report = await pruneStore(
        {
          store,
          catalog,
          clock: { now: () => Date.now() + 10_000 },
          log: silentLogger,
          protections: async () => [],
          openEpochs: async () => new Set(),
          forgetDecisions: async () => {},
          exclusive: (work) => work(),
          stillLeader: () => true,
        },
        { policy: { keepLast: 1, keepWithinMs: 0, keepDaily: 0, keepWeekly: 0, keepMonthly: 0, historyMs: 0 }, graceMs: 5_000, dryRun: false },
      );
      expect(report.deleted).toEqual([1]);
      expect(report.segmentsDeleted).toBe(1);
      expect(await store.has(old.key)).toBe(false);
      expect(await store.list(KEYS_PREFIX)).toEqual(keysBefore);
      expect(await bodiesOf(store, await new Catalog(store).get(2))).toHaveLength(5);
      await other.close();
      await store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('a store written without encryption', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tidemark-plain-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('stays readable with a key configured: plaintext checkpoints before the first encrypted one read, later plaintext ones are refused', async () => {
    const plain = new LocalStore(join(dir, 'store'));
    const old = [await writeSegment(plain, 0, 5)];
    await new Catalog(plain).publish(manifestOf(1, old));
    await new Catalog(plain).publish(manifestOf(2, old));
    // Without a key, as before.
    expect(await bodiesOf(plain, await new Catalog(plain).get(2))).toHaveLength(5);

    const { path } = await keyFile();
    const store = await openStore({ store: `file://${join(dir, 'store')}`, s3Region: 'us-east-1', masterKeyFile: path });
    const catalog = new Catalog(store);
    // No encrypted checkpoint yet: plaintext ones read.
    expect(await catalog.protection(2)).toBe('plaintext');
    await catalog.publish(manifestOf(3, [...old, await writeSegment(store, 5, 5)]));
    expect((await new Catalog(store).get(3)).encryptedSinceEpoch).toBe(3);
    // Older plaintext checkpoints still read, with their (plaintext) segments.
    const reader = new Catalog(store);
    expect(await bodiesOf(store, await reader.get(1))).toHaveLength(5);
    expect(await reader.protection(1)).toBe('plaintext');
    expect(await bodiesOf(store, await reader.get(3))).toHaveLength(10);
    // A plaintext manifest at or above the first encrypted checkpoint is refused.
    await new Catalog(plain).publish(manifestOf(4, old));
    await expect(new Catalog(store).get(4)).rejects.toThrow(UnauthenticatedDataError);
    await expect(new Catalog(store).get(4)).rejects.toThrow(CorruptDataError);
    await store.close();
  });

  it('refuses a key file others can read, and a key of the wrong size, naming the file but never the key', async () => {
    const key = randomBytes(32).toString('hex');
    const open = join(dir, 'open.key');
    await writeFile(open, key, { mode: 0o644 });
    expect(() => loadMasterKeys({ masterKeyFile: open })).toThrow(`master key file ${open} can be read by others (mode 644): run "chmod 600 ${open}"`);
    const short = join(dir, 'short.key');
    await writeFile(short, randomBytes(16).toString('base64'), { mode: 0o600 });
    const err = (() => {
      try {
        loadMasterKeys({ masterKeyFile: short });
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err?.message).toContain(`master key file ${short} does not hold a 32-byte key`);
    expect(err?.message).not.toContain(key);
    expect(loadMasterKeys({})).toBeUndefined();
    expect(loadMasterKeys({ masterKey: key })?.keyId).toBe(masterKeyId(Buffer.from(key, 'hex')));
  });
});

describe('the local file store', () => {
  it('creates objects owner-only (0600) in owner-only directories (0700)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tidemark-mode-'));
    try {
      const root = join(dir, 'store');
      const store = new LocalStore(root);
      await store.init();
      await store.put('segments/prod/orders/x.seg', Buffer.from('x'));
      expect((await stat(join(root, 'segments/prod/orders/x.seg'))).mode & 0o777).toBe(0o600);
      for (const d of ['', 'segments', 'segments/prod', 'segments/prod/orders']) expect((await stat(join(root, d))).mode & 0o777, d || 'root').toBe(0o700);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
