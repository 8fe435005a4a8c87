import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../services/core/errors.js';
import { LocalStore, S3Store, openStore, parseStoreUrl } from '../../services/core/store/index.js';

const credentials = { s3AccessKey: 'key', s3SecretKey: 'secret', s3Region: 'us-east-1' };

describe('parseStoreUrl', () => {
  it('reads bucket and prefix from s3 URLs', () => {
    expect(parseStoreUrl('s3://backups')).toEqual({ kind: 's3', bucket: 'backups', prefix: '' });
    expect(parseStoreUrl('s3://backups/')).toEqual({ kind: 's3', bucket: 'backups', prefix: '' });
    expect(parseStoreUrl('s3://backups/prod/eu-1/')).toEqual({ kind: 's3', bucket: 'backups', prefix: 'prod/eu-1' });
  });

  it('reads absolute and relative directories from file URLs', () => {
    expect(parseStoreUrl('file:///var/lib/tidemark')).toEqual({ kind: 'file', dir: '/var/lib/tidemark' });
    expect(parseStoreUrl('file:///var/lib/with space')).toEqual({ kind: 'file', dir: '/var/lib/with space' });
    expect(parseStoreUrl('file://.tidemark/store')).toEqual({ kind: 'file', dir: resolve('.tidemark/store') });
  });

  it.each(['http://host/bucket', '/plain/path', 's3://', 's3:///prefix', 'file://', 's3://bucket/p?x=1'])(
    'rejects %j with ConfigError',
    (store) => {
      expect(() => parseStoreUrl(store)).toThrow(ConfigError);
    },
  );
});

describe('openStore', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tidemark-open-store-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('opens a LocalStore for file URLs and creates its directory', async () => {
    const root = join(dir, 'nested', 'store');
    const store = await openStore({ store: `file://${root}`, s3Region: 'us-east-1' });
    expect(store).toBeInstanceOf(LocalStore);
    expect(store.url).toBe(`file://${root}`);
    expect((await stat(root)).isDirectory()).toBe(true);
    await store.close();
  });

  it('says which S3 credential is missing', async () => {
    await expect(openStore({ store: 's3://bucket/p', s3Region: 'us-east-1' })).rejects.toThrow(
      /TIDEMARK_S3_ACCESS_KEY and TIDEMARK_S3_SECRET_KEY are not set/,
    );
    await expect(openStore({ store: 's3://bucket/p', s3Region: 'us-east-1', s3AccessKey: 'key' })).rejects.toThrow(
      /TIDEMARK_S3_SECRET_KEY is not set/,
    );
    await expect(openStore({ store: 's3://bucket/p', s3Region: 'us-east-1' })).rejects.toBeInstanceOf(ConfigError);
  });

  it('rejects an unsupported store scheme', async () => {
    await expect(openStore({ store: 'gs://bucket', ...credentials })).rejects.toBeInstanceOf(ConfigError);
  });

  it.each([
    ['ftp://minio:9000', /http:\/\/ or https:\/\//],
    ['not a url', /not a URL/],
    ['http://minio:9000/some/path', /only http\(s\):\/\/host\[:port\]/],
    ['http://user:pass@minio:9000', /must not carry credentials/],
  ])('rejects the S3 endpoint %j before any request', async (endpoint, message) => {
    const err = await openStore({ store: 's3://bucket', s3Endpoint: endpoint, ...credentials }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(message);
  });

  it('rejects an invalid bucket name before any request', async () => {
    await expect(openStore({ store: 's3://Bad_Bucket/p', s3Endpoint: 'http://minio:9000', ...credentials })).rejects.toThrow(
      /bucket name "Bad_Bucket" is invalid/,
    );
  });
});

describe('S3Store', () => {
  const options = { bucket: 'backups', accessKey: 'k', secretKey: 's', endpoint: 'http://minio:9000' };

  it('names itself by bucket and prefix', () => {
    expect(new S3Store({ ...options, prefix: 'prod/eu' }).url).toBe('s3://backups/prod/eu');
    expect(new S3Store({ ...options, prefix: '/prod/' }).url).toBe('s3://backups/prod');
    expect(new S3Store(options).url).toBe('s3://backups');
  });

  it('refuses a part size S3 would reject', () => {
    expect(() => new S3Store({ ...options, partSize: 1024 })).toThrow(ConfigError);
  });

  it('refuses a prefix with .. segments', () => {
    expect(() => new S3Store({ ...options, prefix: 'a/../b' })).toThrow(ConfigError);
  });
});
