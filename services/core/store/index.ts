/** The object store: where segments and manifests live (S3 or a local directory). */
export type { ObjectStore } from './object-store.js';
export { LocalStore, type LocalStoreOptions } from './local-store.js';
export { S3Store, type S3StoreOptions } from './s3-store.js';
export { openStore, parseStoreUrl, type StoreConfig, type StoreLocation } from './open-store.js';
