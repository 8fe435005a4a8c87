/**
 * The one pass-through store for tests: forwards every call to a real store, and lets a test see,
 * slow down or tamper with what is read.
 */
import type { GetOptions, ObjectStore, StoredObject } from '../../services/core/store/object-store.js';

export interface WatchOptions {
  /** Replaces what a read returns; told how many times that key has been read, this read included. */
  onRead?: (key: string, bytes: Buffer, reads: number) => Buffer;
  /** Each read waits this long before it reaches the inner store. */
  readDelayMs?: number;
}

/** Records the key of every read, and the most reads in flight at once (`mostInFlight`). */
export class WatchedStore implements ObjectStore {
  readonly gets: string[] = [];
  mostInFlight = 0;
  private inFlight = 0;

  constructor(
    private readonly inner: ObjectStore,
    private readonly options: WatchOptions = {},
  ) {}

  get url(): string {
    return this.inner.url;
  }
  get vault() {
    return this.inner.vault;
  }
  async get(key: string, options?: GetOptions): Promise<Buffer> {
    this.gets.push(key);
    this.inFlight += 1;
    this.mostInFlight = Math.max(this.mostInFlight, this.inFlight);
    try {
      if (this.options.readDelayMs) await new Promise((resolve) => setTimeout(resolve, this.options.readDelayMs));
      const bytes = await this.inner.get(key, options);
      return this.options.onRead ? this.options.onRead(key, bytes, this.gets.filter((k) => k === key).length) : bytes;
    } finally {
      this.inFlight -= 1;
    }
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
  listObjects(prefix: string): Promise<StoredObject[]> {
    return this.inner.listObjects(prefix);
  }
  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
