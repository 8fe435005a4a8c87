/** A store wrapper for tests that need to see, or tamper with, what is read from a real store. */
import type { ObjectStore } from '../../services/core/store/object-store.js';

/**
 * Forwards every call to `inner` and records the key of every read. `onRead` may replace what a
 * read returns; it is told how many times that key has been read, this read included.
 */
export class WatchedStore implements ObjectStore {
  readonly gets: string[] = [];

  constructor(
    private readonly inner: ObjectStore,
    private readonly onRead: (key: string, bytes: Buffer, reads: number) => Buffer = (_key, bytes) => bytes,
  ) {}

  get url(): string {
    return this.inner.url;
  }
  async get(key: string): Promise<Buffer> {
    this.gets.push(key);
    const bytes = await this.inner.get(key);
    return this.onRead(key, bytes, this.gets.filter((k) => k === key).length);
  }
  put(key: string, body: Buffer): Promise<void> {
    return this.inner.put(key, body);
  }
  has(key: string): Promise<boolean> {
    return this.inner.has(key);
  }
  list(prefix: string): Promise<string[]> {
    return this.inner.list(prefix);
  }
  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
