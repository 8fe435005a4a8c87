/**
 * Opens the object store named by the configuration: `file:///dir` for the embedded local store,
 * `s3://bucket/prefix` for an S3-compatible service.
 */
import { fileURLToPath } from 'node:url';
import { abortable, stopReason } from '../infrastructure/abortable.js';
import { retry } from '../infrastructure/retry.js';
import { readTlsMaterial } from '../infrastructure/backend-tls.js';
import { normalizeStoreUrl, type Config } from '../infrastructure/config.js';
import { ConfigError, TidemarkError, errorMessage } from '../errors.js';
import { LocalStore } from './local-store.js';
import type { ObjectStore } from './object-store.js';
import { S3Store } from './s3-store.js';
import { loadMasterKeys } from '../crypto/key-provider.js';
import { Vault } from '../crypto/vault.js';

/** The configuration keys that choose and reach the object store. */
export type StoreConfig = Pick<Config, 'store' | 's3Endpoint' | 's3AccessKey' | 's3SecretKey' | 's3Region'> &
  Partial<Pick<Config, 'masterKey' | 'masterKeyFile' | 'masterKeyPreviousFiles' | 's3TlsCa'>>;

/** Where a store URL points, before anything is opened. */
export type StoreLocation =
  | { kind: 'file'; /** Absolute directory path. */ dir: string }
  | { kind: 's3'; bucket: string; /** '' or a prefix without leading or trailing '/'. */ prefix: string };

/** Parses a store URL; throws ConfigError naming the problem if it is not one Tidemark supports. */
export function parseStoreUrl(store: string): StoreLocation {
  const normalized = normalizeStoreUrl(store);
  if (normalized.startsWith('file://')) {
    let dir: string;
    try {
      dir = fileURLToPath(normalized);
    } catch (err) {
      throw new ConfigError(`store ${store} is not a usable file URL (${errorMessage(err)}): use file:///absolute/dir`, { cause: err });
    }
    return { kind: 'file', dir };
  }
  const rest = normalized.slice('s3://'.length);
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const prefix = slash < 0 ? '' : rest.slice(slash + 1).replace(/^\/+|\/+$/g, '');
  if (/[?#]/.test(rest)) {
    throw new ConfigError(`store ${store} must not carry a query or fragment: use s3://bucket/prefix and the TIDEMARK_S3_* settings`);
  }
  return { kind: 's3', bucket, prefix };
}

/**
 * Opens the configured store and makes it ready to write: creates the local directory, or
 * creates the bucket if it is missing. Rejects with ConfigError when the configuration cannot
 * work (unknown scheme, missing S3 credentials, unusable directory); with TransientError when
 * the S3 service could not be reached and trying again may help.
 */
export async function openStore(config: StoreConfig): Promise<ObjectStore> {
  // With a master key configured, objects carrying message data or cut metadata are sealed.
  // Read first: a missing or unsafe key file fails before anything is created.
  const provider = loadMasterKeys(config);
  const store = await openPlainStore(config);
  if (provider) store.vault = new Vault(store, provider);
  return store;
}

async function openPlainStore(config: StoreConfig): Promise<ObjectStore> {
  const location = parseStoreUrl(config.store);
  if (location.kind === 'file') {
    const store = new LocalStore(location.dir);
    try {
      await store.init();
    } catch (err) {
      if (err instanceof TidemarkError && err.retryable) throw err;
      throw new ConfigError(`cannot create the store directory ${location.dir}: ${errorMessage(err)}. Nothing was written; fix TIDEMARK_STORE or the directory's permissions`, { cause: err });
    }
    return store;
  }
  const { s3AccessKey: accessKey, s3SecretKey: secretKey } = config;
  if (!accessKey || !secretKey) {
    const missing = [accessKey ? '' : 'TIDEMARK_S3_ACCESS_KEY', secretKey ? '' : 'TIDEMARK_S3_SECRET_KEY'].filter(Boolean);
    throw new ConfigError(`store ${config.store} is in S3 but ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not set. Nothing was written; set ${missing.length > 1 ? 'them' : 'it'} (and TIDEMARK_S3_ENDPOINT unless the bucket is in AWS)`);
  }
  const store = new S3Store({
    bucket: location.bucket,
    prefix: location.prefix,
    endpoint: config.s3Endpoint,
    accessKey,
    secretKey,
    region: config.s3Region,
    ca: readTlsMaterial({ ca: config.s3TlsCa }, 'S3', 'TIDEMARK_S3_TLS')?.ca,
  });
  try {
    await store.ensureBucket();
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}

/**
 * Opens the store as a service starts, trying again while the failure is transient (the S3
 * service unreachable or answering 5xx: "safe to retry"), with backoff up to 5 s, until `signal`
 * aborts. A configuration error fails at once. A store that is down for a while must not turn a
 * restarted service into one that exits over and over.
 */
export async function openStoreRetrying(
  config: StoreConfig,
  signal: AbortSignal | undefined,
  onRetry: (err: unknown, delayMs: number) => void,
): Promise<ObjectStore> {
  try {
    return await retry(() => abortable(openStore(config), signal, (late) => late.close()), {
      initialDelayMs: 200,
      maxDelayMs: 5_000,
      retryable: (err) => err instanceof TidemarkError && err.retryable,
      onRetry: (err, _attempt, delayMs) => onRetry(err, delayMs),
      signal,
    });
  } catch (err) {
    throw signal?.aborted ? stopReason(signal) : err;
  }
}
