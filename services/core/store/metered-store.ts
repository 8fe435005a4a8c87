/**
 * An object store that reports each operation's duration, bytes and failure to an observer
 * (metrics), and otherwise is the store it wraps. The vault is the wrapped store's.
 */
import type { GetOptions, ObjectStore, StoredObject } from './object-store.js';

/** The operations a metered store reports; listObjects is a `list`. */
export type StoreOperation = 'put' | 'get' | 'has' | 'list' | 'delete';

export interface StoreObserver {
  /** `bytes`: written by a put, read by a get; 0 for the others. */
  finished(op: StoreOperation, seconds: number, bytes: number): void;
  failed(op: StoreOperation, seconds: number, err: unknown): void;
}

export function meteredStore(store: ObjectStore, observer: StoreObserver): ObjectStore {
  const timed = async <T>(op: StoreOperation, run: () => Promise<T>, bytes: (result: T) => number): Promise<T> => {
    const startedAt = performance.now();
    try {
      const result = await run();
      observer.finished(op, (performance.now() - startedAt) / 1000, bytes(result));
      return result;
    } catch (err) {
      observer.failed(op, (performance.now() - startedAt) / 1000, err);
      throw err;
    }
  };
  const none = () => 0;
  return {
    get url() {
      return store.url;
    },
    get vault() {
      return store.vault;
    },
    put: (key: string, body: Buffer) => timed('put', () => store.put(key, body), () => body.length),
    get: (key: string, options?: GetOptions) => timed('get', () => store.get(key, options), (b: Buffer) => b.length),
    has: (key: string) => timed('has', () => store.has(key), none),
    list: (prefix: string) => timed('list', () => store.list(prefix), none),
    listObjects: (prefix: string): Promise<StoredObject[]> => timed('list', () => store.listObjects(prefix), none),
    delete: (key: string) => timed('delete', () => store.delete(key), none),
    close: () => store.close(),
  };
}
