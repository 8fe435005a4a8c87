/**
 * The production object store: any S3-compatible service (MinIO, AWS S3, Ceph, ...) through the
 * minio client. Keys live under `prefix/` in one bucket.
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { Client } from 'minio';
import { ConfigError, ObjectNotFoundError, OversizedObjectError, StoreError, TransientError, errorMessage } from '../errors.js';
import type { Vault } from '../crypto/vault.js';
import { MAX_KEY_BYTES } from './keys.js';
import { checkListPrefix, checkObjectKey, compareKeys, oversized } from './local-store.js';
import type { GetOptions, ObjectStore, StoredObject } from './object-store.js';

/** S3 limits an object key (prefix included) to 1,024 bytes. */
const MAX_S3_KEY_BYTES = 1024;

/** S3 limits a part to at least 5 MiB; minio-js refuses smaller part sizes. */
const MIN_PART_SIZE = 5 * 1024 * 1024;

/** Options of {@link S3Store}. */
export interface S3StoreOptions {
  /** Bucket name (3-63 lowercase letters, digits, dots and dashes). */
  bucket: string;
  /** Key prefix inside the bucket, without leading or trailing '/'; '' for the bucket root. @default '' */
  prefix?: string;
  /** Endpoint URL, `http(s)://host[:port]`, e.g. http://localhost:9000. @default https://s3.amazonaws.com */
  endpoint?: string;
  /** Access key id. */
  accessKey: string;
  /** Secret access key. */
  secretKey: string;
  /** Region the bucket lives in (and is created in). @default us-east-1 */
  region?: string;
  /**
   * Address buckets as `endpoint/bucket` rather than `bucket.endpoint`: MinIO and most
   * self-hosted servers need it; AWS prefers virtual-hosted style.
   * @default true with an explicit endpoint, false for AWS
   */
  pathStyle?: boolean;
  /**
   * Objects up to this size go up in one PUT; larger ones use a multipart upload. Tidemark's
   * segments and manifests stay far below it, which keeps uploads to one request and works with
   * servers whose multipart support is incomplete (s3rver). Minimum 5 MiB.
   * @default 64 MiB
   */
  partSize?: number;
  /**
   * Retries of a request that failed with a retryable HTTP status (500, 502, 503, 504, 429, ...)
   * inside the client, before the call rejects with TransientError.
   * @default 1
   */
  retries?: number;
  /** CA certificates (PEM) an https:// endpoint's certificate must chain to. @default the system's roots */
  ca?: Buffer;
}

/** An {@link ObjectStore} in an S3 bucket. */
export class S3Store implements ObjectStore {
  readonly url: string;
  readonly bucket: string;
  /** '' or the prefix with one trailing '/', prepended to every key. */
  private readonly keyPrefix: string;
  private readonly region: string;
  private readonly client: Client;
  private readonly agent: HttpAgent;
  vault?: Vault;

  constructor(options: S3StoreOptions) {
    const prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.bucket = options.bucket;
    this.keyPrefix = prefix ? `${prefix}/` : '';
    this.url = `s3://${options.bucket}${prefix ? `/${prefix}` : ''}`;
    this.region = options.region ?? 'us-east-1';
    checkBucketName(options.bucket);
    if (prefix) checkListPrefix(prefix, this.url);
    if (Buffer.byteLength(this.keyPrefix) + MAX_KEY_BYTES > MAX_S3_KEY_BYTES) {
      throw new ConfigError(
        `store ${this.url}: its prefix is too long: keys can be ${MAX_KEY_BYTES} bytes long, and S3 limits a key with its prefix to ${MAX_S3_KEY_BYTES} bytes`,
      );
    }
    if (!options.accessKey || !options.secretKey) {
      throw new ConfigError(`store ${this.url} needs an S3 access key and secret key: set TIDEMARK_S3_ACCESS_KEY and TIDEMARK_S3_SECRET_KEY`);
    }
    const endpoint = parseEndpoint(options.endpoint, this.url);
    const partSize = options.partSize ?? 64 * 1024 * 1024;
    if (!Number.isInteger(partSize) || partSize < MIN_PART_SIZE) {
      throw new ConfigError(`S3 part size ${partSize} is invalid: it must be a whole number of bytes, at least 5 MiB`);
    }
    // Our own agent, so close() can release its sockets instead of leaving them to the global one.
    this.agent = endpoint.useSSL ? new HttpsAgent({ keepAlive: true, ca: options.ca }) : new HttpAgent({ keepAlive: true });
    this.client = new Client({
      endPoint: endpoint.host,
      port: endpoint.port,
      useSSL: endpoint.useSSL,
      accessKey: options.accessKey,
      secretKey: options.secretKey,
      region: this.region,
      pathStyle: options.pathStyle ?? endpoint.explicit,
      partSize,
      transportAgent: this.agent,
      retryOptions: { maximumRetryCount: options.retries ?? 1 },
    });
  }

  /** Creates the bucket if it does not exist; another process creating it meanwhile is fine. */
  async ensureBucket(): Promise<void> {
    try {
      if (await this.client.bucketExists(this.bucket)) return;
    } catch (err) {
      throw this.wrap(`check bucket ${this.bucket}`, err);
    }
    try {
      await this.client.makeBucket(this.bucket, this.region);
    } catch (err) {
      const code = s3Code(err);
      if (code === 'BucketAlreadyOwnedByYou' || code === 'BucketAlreadyExists') return;
      throw this.wrap(`create bucket ${this.bucket}`, err);
    }
  }

  async put(key: string, body: Buffer): Promise<void> {
    const name = this.nameOf(key);
    try {
      // A Buffer below partSize goes up in a single PUT, which S3 applies atomically.
      await this.client.putObject(this.bucket, name, body, body.length);
    } catch (err) {
      throw this.wrap(`write ${key}`, err);
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<Buffer> {
    const name = this.nameOf(key);
    const { maxBytes } = options;
    try {
      const stream = await this.client.getObject(this.bucket, name);
      // The response's Content-Length is the object's size: checked before the body is read, and
      // the count of bytes read is checked too, should a server not send it.
      const length = Number((stream as { headers?: Record<string, unknown> }).headers?.['content-length'] ?? NaN);
      if (maxBytes !== undefined && Number.isFinite(length) && length > maxBytes) {
        stream.destroy();
        throw oversized(key, this.url, length, maxBytes);
      }
      const chunks: Buffer[] = [];
      let read = 0;
      for await (const chunk of stream) {
        read += (chunk as Buffer).length;
        if (maxBytes !== undefined && read > maxBytes) {
          stream.destroy();
          throw oversized(key, this.url, read, maxBytes);
        }
        chunks.push(chunk as Buffer);
      }
      return Buffer.concat(chunks);
    } catch (err) {
      if (err instanceof OversizedObjectError) throw err;
      const code = s3Code(err);
      if (code === 'NoSuchKey' || code === 'NotFound') throw new ObjectNotFoundError(key, this.url, { cause: err });
      throw this.wrap(`read ${key}`, err);
    }
  }

  async has(key: string): Promise<boolean> {
    const name = this.nameOf(key);
    try {
      await this.client.statObject(this.bucket, name);
      return true;
    } catch (err) {
      // HEAD responses have no body, so a missing bucket also shows up as NotFound here.
      const code = s3Code(err);
      if (code === 'NotFound' || code === 'NoSuchKey') return false;
      throw this.wrap(`check ${key}`, err);
    }
  }

  /**
   * Pages through ListObjects (V1) with an explicit marker, 1000 keys a page.
   *
   * Why V1: ListObjectsV2 continuation tokens are broken in s3rver on Node 20 (it encrypts them
   * with DES, which OpenSSL 3 no longer offers, so the second page fails with a 500). V1 with the
   * last key as marker works on s3rver, MinIO and AWS alike.
   *
   * s3rver gaps, which real S3 and MinIO do not have: it walks its directory tree, so a page
   * boundary between keys like `a/b/x` and `a/b-x` (where directory order differs from key
   * order) can skip keys; and it ignores `encoding-type=url`, so keys containing '%' or '+'
   * come back mangled. Tidemark's own key layout avoids both. (s3rver also prunes empty
   * directories on DELETE, so a DELETE racing another DELETE or a PUT in the same "directory"
   * can fail with a 500; the client retries it once, then it surfaces as TransientError.)
   */
  async list(prefix: string): Promise<string[]> {
    return (await this.listObjects(prefix)).map((o) => o.key);
  }

  async listObjects(prefix: string): Promise<StoredObject[]> {
    checkListPrefix(prefix, this.url);
    const fullPrefix = this.keyPrefix + prefix;
    const objects: StoredObject[] = [];
    let marker = '';
    for (;;) {
      const page = await this.client
        .listObjectsQuery(this.bucket, fullPrefix, marker, { Delimiter: '', MaxKeys: 1000 })
        .catch((err: unknown) => {
          throw this.wrap(`list ${prefix || '(all)'}`, err);
        });
      let last = '';
      for (const object of page.objects) {
        if (!object.name) continue;
        last = object.name;
        if (!object.name.startsWith(fullPrefix)) continue;
        const modified = object.lastModified ? new Date(object.lastModified).getTime() : NaN;
        objects.push({ key: object.name.slice(this.keyPrefix.length), size: Number(object.size ?? 0), lastModifiedMs: Number.isFinite(modified) ? modified : 0 });
      }
      if (!page.isTruncated) break;
      const next = page.nextMarker || last;
      // A truncated page that does not move the marker forward would loop for ever.
      if (!next || next === marker) {
        throw new StoreError(`listing ${prefix || '(all)'} in store ${this.url} stopped making progress at marker ${JSON.stringify(marker)}; the S3 server returned a truncated page without a new marker`);
      }
      marker = next;
    }
    return objects.sort((a, b) => compareKeys(a.key, b.key));
  }

  async delete(key: string): Promise<void> {
    const name = this.nameOf(key);
    try {
      // S3 DELETE of a missing key succeeds (204); a server that answers 404 means the same.
      await this.client.removeObject(this.bucket, name);
    } catch (err) {
      const code = s3Code(err);
      if (code === 'NoSuchKey' || code === 'NotFound') return;
      throw this.wrap(`delete ${key}`, err);
    }
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }

  private nameOf(key: string): string {
    checkObjectKey(key, this.url);
    return this.keyPrefix + key;
  }

  private wrap(action: string, err: unknown): Error {
    const message = `cannot ${action} in store ${this.url}: ${errorMessage(err)}`;
    if (isTransient(err)) {
      return new TransientError(`${message}; nothing was changed, safe to retry`, { cause: err });
    }
    const code = s3Code(err);
    if (code === 'NoSuchBucket') {
      return new ConfigError(`${message}: bucket ${this.bucket} does not exist; create it or fix TIDEMARK_STORE`, { cause: err });
    }
    if (code === 'InvalidAccessKeyId' || code === 'SignatureDoesNotMatch' || code === 'AccessDenied') {
      return new ConfigError(`${message}: check TIDEMARK_S3_ACCESS_KEY, TIDEMARK_S3_SECRET_KEY and the bucket policy`, { cause: err });
    }
    return new StoreError(message, { cause: err });
  }
}

interface Endpoint {
  host: string;
  port: number | undefined;
  useSSL: boolean;
  /** False when no endpoint was given and AWS is used. */
  explicit: boolean;
}

function parseEndpoint(endpoint: string | undefined, store: string): Endpoint {
  if (endpoint === undefined || endpoint === '') {
    return { host: 's3.amazonaws.com', port: undefined, useSSL: true, explicit: false };
  }
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch (err) {
    throw new ConfigError(`S3 endpoint ${endpoint} for store ${store} is not a URL: use http(s)://host[:port]`, { cause: err });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`S3 endpoint ${endpoint} for store ${store} must start with http:// or https://`);
  }
  if (url.username || url.password) {
    throw new ConfigError(`S3 endpoint ${url.host} for store ${store} must not carry credentials: set TIDEMARK_S3_ACCESS_KEY and TIDEMARK_S3_SECRET_KEY instead`);
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) {
    throw new ConfigError(`S3 endpoint ${endpoint} for store ${store} must be only http(s)://host[:port]: put the bucket and prefix in TIDEMARK_STORE (s3://bucket/prefix)`);
  }
  return {
    // URL keeps IPv6 hosts bracketed; the client wants them bare.
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port ? Number(url.port) : undefined,
    useSSL: url.protocol === 'https:',
    explicit: true,
  };
}

function checkBucketName(bucket: string): void {
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket) || bucket.includes('..')) {
    throw new ConfigError(`S3 bucket name ${JSON.stringify(bucket)} is invalid: use 3-63 lowercase letters, digits, dots and dashes, starting and ending with a letter or digit`);
  }
}

function s3Code(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

/** S3 error codes that mean "the service is busy or hiccuped", not "the request is wrong". */
const TRANSIENT_S3_CODES = new Set([
  'InternalError',
  'ServiceUnavailable',
  'SlowDown',
  'RequestTimeout',
  'OperationAborted',
  'XMinioServerNotInitialized',
]);

/** Socket and DNS failures that a later attempt can get past. */
const TRANSIENT_NET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

function isTransient(err: unknown): boolean {
  const code = s3Code(err);
  if (TRANSIENT_S3_CODES.has(code) || TRANSIENT_NET_CODES.has(code)) return true;
  // minio-js turns a retryable HTTP status (5xx, 429) into a plain Error once its own retries
  // are spent, with no code: recognise it by its message.
  return err instanceof Error && /Retryable HTTP status|Retries exhausted/.test(err.message);
}
