/**
 * The object store: where segments and manifests live (S3 or a local directory), and the keys
 * and encodings of what is kept there. An entry of its own, so that importing core does not load
 * the S3 client.
 */
export { LocalStore, type LocalStoreOptions } from './local-store.js';
export { S3Store, type S3StoreOptions } from './s3-store.js';
export {
  checkpointKey,
  decodePartition,
  encodePartition,
  fenceRangeKey,
  MAX_MANIFEST_BYTES,
  parseCheckpointKey,
  parseStagingKey,
  partitionKey,
  SEGMENTS_PREFIX,
  segmentKey,
  segmentPrefix,
  STAGING_PREFIX,
  VERIFIED_KEY,
} from './keys.js';
export type { GetOptions, ObjectStore, StoredObject } from './object-store.js';
export { meteredStore, type StoreObserver, type StoreOperation } from './metered-store.js';
export { HEALTH_PROBE_KEY, storeCheck } from './store-check.js';
export { openStore, openStoreRetrying, parseStoreUrl, type StoreConfig, type StoreLocation } from './open-store.js';
export { isSealed, KEYS_PREFIX, Vault, type RotationReport, type SealPurpose } from '../crypto/vault.js';
export { LocalKeyProvider, loadMasterKeys, masterKeyId, type KeyProvider, type WrappedKey } from '../crypto/key-provider.js';
