import type { Vault } from '../crypto/vault.js';

/** Options of {@link ObjectStore.get}. */
export interface GetOptions {
  /**
   * Refuse (OversizedObjectError) an object larger than this, before reading it whole: its size
   * recorded in a manifest, or a cap for its kind. @default no limit
   */
  maxBytes?: number;
}

/** One object of a listing with what garbage collection needs to know of it. */
export interface StoredObject {
  key: string;
  /** Stored bytes. */
  size: number;
  /** When the object was last written (the store's clock, ms since the Unix epoch). */
  lastModifiedMs: number;
}

/**
 * The object store strategy: where segments and manifests live. Keys are relative to the store's
 * root (the bucket prefix or the directory) and use '/' as separator.
 *
 * Correctness never rests on conditional writes: every key Tidemark writes is either
 * content-addressed (segments) or written by exactly one leader for one epoch (manifests).
 */
export interface ObjectStore {
  /** Where this store lives, for messages: `s3://bucket/prefix` or `file:///dir`. */
  readonly url: string;
  /** Write an object whole; when the promise resolves the object is durable and readable. */
  put(key: string, body: Buffer): Promise<void>;
  /**
   * Read an object whole; rejects with ObjectNotFoundError if it does not exist, and with
   * OversizedObjectError if it is larger than `options.maxBytes` (checked before it is read).
   */
  get(key: string, options?: GetOptions): Promise<Buffer>;
  /** True if the object exists. */
  has(key: string): Promise<boolean>;
  /** Every key under prefix (relative to the store root), sorted ascending. */
  list(prefix: string): Promise<string[]>;
  /** Like list, with each object's size and last-modified time (for garbage collection). */
  listObjects(prefix: string): Promise<StoredObject[]>;
  /** Remove an object; removing a missing object is not an error. */
  delete(key: string): Promise<void>;
  /**
   * How objects carrying message data or cut metadata are encrypted and authenticated
   * (crypto/vault.ts); undefined when no master key is configured. Set by openStore.
   */
  vault?: Vault;
  /** Release connections and handles. */
  close(): Promise<void>;
}
