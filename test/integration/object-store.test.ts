import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ObjectNotFoundError, TransientError } from '../../services/core/errors.js';
import { LocalStore, S3Store, type ObjectStore } from '../../services/core/store/index.js';
import { testServices, uniqueName } from '../helpers/services.js';

interface OpenedStore {
  store: ObjectStore;
  cleanup(): Promise<void>;
}

const local = {
  name: 'LocalStore',
  async open(): Promise<OpenedStore> {
    const dir = await mkdtemp(join(tmpdir(), 'tidemark-local-store-'));
    return { store: new LocalStore(dir), cleanup: () => rm(dir, { recursive: true, force: true }) };
  },
};

/** One bucket per run; each store gets its own prefix in it. */
const bucket = uniqueName('tm-store');

async function openS3(prefix: string): Promise<OpenedStore> {
  const { s3 } = await testServices();
  const store = new S3Store({ bucket, prefix, ...s3 });
  await store.ensureBucket();
  return {
    store,
    async cleanup() {
      // One at a time: s3rver prunes empty directories on DELETE and concurrent deletes in one
      // directory race there (500, retried by the client, noisy).
      for (const key of await store.list('')) await store.delete(key);
      await store.close();
    },
  };
}

const s3 = { name: 'S3Store', open: () => openS3(uniqueName('run')) };

describe.each([local, s3])('ObjectStore contract: $name', (fixture) => {
  let opened: OpenedStore;
  let store: ObjectStore;
  /** A fresh key namespace per test, so tests cannot see each other's objects. */
  const ns = () => uniqueName('t');

  beforeAll(async () => {
    opened = await fixture.open();
    store = opened.store;
  });
  afterAll(async () => {
    await opened?.cleanup();
  });

  it('returns exactly the bytes that were put, including every byte value and empty objects', async () => {
    const base = ns();
    const body = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(4096)]);
    await store.put(`${base}/binary`, body);
    await store.put(`${base}/empty`, Buffer.alloc(0));
    expect((await store.get(`${base}/binary`)).equals(body)).toBe(true);
    expect((await store.get(`${base}/empty`)).length).toBe(0);
  });

  it('replaces an object on a second put, keeping one key', async () => {
    const key = `${ns()}/manifest`;
    await store.put(key, Buffer.from('first version, longer than the second'));
    await store.put(key, Buffer.from('second'));
    expect((await store.get(key)).toString()).toBe('second');
    expect(await store.list(key)).toEqual([key]);
  });

  it('rejects get of a missing key with ObjectNotFoundError naming key and store', async () => {
    const key = `${ns()}/missing`;
    const err = await store.get(key).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ObjectNotFoundError);
    expect(err).toMatchObject({ key, store: store.url });
  });

  it('treats a key that is only a prefix of other keys as missing', async () => {
    const base = ns();
    await store.put(`${base}/dir/object`, Buffer.from('x'));
    expect(await store.has(`${base}/dir`)).toBe(false);
    await expect(store.get(`${base}/dir`)).rejects.toBeInstanceOf(ObjectNotFoundError);
  });

  it('reports has() before put, after put and after delete', async () => {
    const key = `${ns()}/object`;
    expect(await store.has(key)).toBe(false);
    await store.put(key, Buffer.from('x'));
    expect(await store.has(key)).toBe(true);
    await store.delete(key);
    expect(await store.has(key)).toBe(false);
  });

  it('lists nested keys under a prefix, sorted, without keys of neighbouring prefixes', async () => {
    const base = ns();
    const keys = ['a/2', 'a/1', 'a/sub/x', 'a-b', 'ab', 'b/1'].map((k) => `${base}/${k}`);
    await Promise.all(keys.map((key) => store.put(key, Buffer.from(key))));
    await store.put(`${ns()}/a/1`, Buffer.from('another namespace'));

    expect(await store.list(`${base}/a/`)).toEqual([`${base}/a/1`, `${base}/a/2`, `${base}/a/sub/x`]);
    // A prefix is a string prefix, as in S3: it also matches a-b and ab.
    expect(await store.list(`${base}/a`)).toEqual([`${base}/a-b`, `${base}/a/1`, `${base}/a/2`, `${base}/a/sub/x`, `${base}/ab`]);
    expect(await store.list(`${base}/`)).toEqual([...keys].sort());
    expect(await store.list(`${base}/nothing/`)).toEqual([]);
    const all = await store.list('');
    expect(all).toEqual([...all].sort());
    expect(all).toEqual(expect.arrayContaining(keys));
  });

  it('lists objects with their sizes and last-modified times, as list does, newer writes later (for garbage collection)', async () => {
    const base = ns();
    const before = Date.now();
    await store.put(`${base}/old`, Buffer.from('12345'));
    await store.put(`${base}/sub/x`, Buffer.alloc(0));
    // S3 times have whole seconds: the next write lands in a later second.
    await new Promise((r) => setTimeout(r, 1_100));
    await store.put(`${base}/new`, Buffer.from('1234567'));
    const objects = await store.listObjects(`${base}/`);
    expect(objects.map((o) => o.key)).toEqual(await store.list(`${base}/`));
    const byKey = new Map(objects.map((o) => [o.key.slice(base.length + 1), o]));
    expect(byKey.get('old')!.size).toBe(5);
    expect(byKey.get('sub/x')!.size).toBe(0);
    expect(byKey.get('new')!.size).toBe(7);
    for (const o of objects) {
      expect(o.lastModifiedMs).toBeGreaterThanOrEqual(before - 1_000);
      expect(o.lastModifiedMs).toBeLessThanOrEqual(Date.now() + 1_000);
    }
    expect(byKey.get('new')!.lastModifiedMs).toBeGreaterThan(byKey.get('old')!.lastModifiedMs);
    await store.delete(`${base}/old`);
    expect((await store.listObjects(`${base}/`)).map((o) => o.key)).toEqual([`${base}/new`, `${base}/sub/x`]);
  });

  it('deletes an object, and deleting a missing object succeeds', async () => {
    const base = ns();
    await store.put(`${base}/keep`, Buffer.from('k'));
    await store.put(`${base}/drop`, Buffer.from('d'));
    await store.delete(`${base}/drop`);
    await store.delete(`${base}/drop`);
    await store.delete(`${base}/never-existed`);
    expect(await store.list(`${base}/`)).toEqual([`${base}/keep`]);
    await expect(store.get(`${base}/drop`)).rejects.toBeInstanceOf(ObjectNotFoundError);
  });

  it('lists all 1,100 keys under one prefix (more than one S3 page)', async () => {
    const base = ns();
    const keys = Array.from({ length: 1100 }, (_, i) => `${base}/segments/${String(i).padStart(6, '0')}`);
    await mapLimit(keys, 32, (key) => store.put(key, Buffer.from('s')));
    await store.put(`${base}/segmentz`, Buffer.from('neighbour'));
    expect(await store.list(`${base}/segments/`)).toEqual(keys);
  });

  it.each(['', '/absolute', '../escape', 'a/../b', 'a/./b', 'a//b', 'trailing/', 'a\\b', 'x/.tidemark-tmp-1'])(
    'rejects the key %j with ConfigError',
    async (key) => {
      await expect(store.put(key, Buffer.from('x'))).rejects.toBeInstanceOf(ConfigError);
      await expect(store.get(key)).rejects.toBeInstanceOf(ConfigError);
    },
  );

  it('rejects a list prefix that escapes the root', async () => {
    await expect(store.list('../')).rejects.toBeInstanceOf(ConfigError);
    await expect(store.list('/abs')).rejects.toBeInstanceOf(ConfigError);
  });
});

describe('LocalStore', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tidemark-local-store-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('leaves no temporary file behind and never lists one', async () => {
    const store = new LocalStore(dir);
    await store.put('q/segment', Buffer.from('data'));
    expect(await readdir(join(dir, 'q'))).toEqual(['segment']);
    // What a crash between write and rename leaves behind.
    await writeFile(join(dir, 'q', '.tidemark-tmp-deadbeef'), 'partial');
    expect(await store.list('')).toEqual(['q/segment']);
  });

  it('has a file:// URL naming its directory', () => {
    expect(new LocalStore(dir).url).toBe(`file://${dir}`);
  });
});

describe('S3Store', () => {
  it('keeps stores with neighbouring prefixes in one bucket apart', async () => {
    const one = await openS3('apart');
    const two = await openS3('apart2');
    try {
      await one.store.put('k', Buffer.from('1'));
      await two.store.put('k', Buffer.from('2'));
      expect(await one.store.list('')).toEqual(['k']);
      expect((await one.store.get('k')).toString()).toBe('1');
      expect((await two.store.get('k')).toString()).toBe('2');
      expect(one.store.url).toBe(`s3://${bucket}/apart`);
    } finally {
      await one.cleanup();
      await two.cleanup();
    }
  });

  it('accepts a bucket that already exists', async () => {
    const { s3 } = await testServices();
    const store = new S3Store({ bucket, ...s3 });
    await store.ensureBucket();
    await store.ensureBucket();
    await store.close();
  });

  it('rejects with TransientError when the endpoint cannot be reached', async () => {
    const port = await closedPort();
    const store = new S3Store({ bucket, endpoint: `http://127.0.0.1:${port}`, accessKey: 'k', secretKey: 's', retries: 0 });
    await expect(store.get('x')).rejects.toBeInstanceOf(TransientError);
    await expect(store.list('')).rejects.toBeInstanceOf(TransientError);
    await store.close();
  });
});

/** Runs fn over items with at most `limit` calls in flight. */
async function mapLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** A local port that nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
