/**
 * The embedded object store: one file per object under a root directory. It is the default for
 * demos and single-machine setups, so it must keep the same promise as S3: a put that resolved
 * survives a crash, and a reader never sees half an object.
 */
import { randomBytes } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError, ObjectNotFoundError, OversizedObjectError, StoreError, TidemarkError, TransientError, errorMessage } from '../errors.js';
import type { Vault } from '../crypto/vault.js';
import type { GetOptions, ObjectStore, StoredObject } from './object-store.js';

/**
 * Every temporary file starts with this. Keys may not contain a segment that starts with it, so a
 * listing can skip temporary files without ever hiding an object.
 */
const TEMP_PREFIX = '.tidemark-tmp-';

/**
 * Objects and directories are the owner's alone: a store holds message bodies (docs/SECURITY.md).
 * Directories and files that already exist keep their modes.
 */
const DIR_MODE = 0o700;
const FILE_MODE = 0o600;

/** File-system errors that come from momentary pressure, not from the request or the data. */
const TRANSIENT_FS_CODES = new Set(['EMFILE', 'ENFILE', 'EAGAIN', 'EBUSY', 'EINTR']);

/**
 * Checks an object key against the rules both stores share: relative, '/'-separated, no empty,
 * `.` or `..` segments, no NUL, and no segment that looks like a local temporary file. The S3
 * store applies the same rules so that a key accepted by one store is accepted by the other.
 */
export function checkObjectKey(key: string, store: string): void {
  if (typeof key !== 'string' || key.length === 0) {
    throw new ConfigError(`object key must be a non-empty string (store ${store}); nothing was read or written`);
  }
  checkSegments(key, store, 'object key', false);
}

/**
 * Checks a listing prefix: the empty string (everything) or a relative path, which may end with
 * '/' and may end in a partial segment (`segments/q1/0000`), as with S3 prefixes.
 */
export function checkListPrefix(prefix: string, store: string): void {
  if (typeof prefix !== 'string') {
    throw new ConfigError(`list prefix must be a string (store ${store})`);
  }
  if (prefix.length === 0) return;
  checkSegments(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix, store, 'list prefix', true);
}

function checkSegments(path: string, store: string, what: string, partialLast: boolean): void {
  const problem = (reason: string) =>
    new ConfigError(`${what} ${JSON.stringify(path)} is invalid: ${reason} (store ${store}); nothing was read or written`);
  if (path.startsWith('/')) throw problem('it must be relative to the store root, not start with /');
  if (path.includes('\0')) throw problem('it contains a NUL character');
  if (path.includes('\\')) throw problem('it contains a backslash; use / as the separator');
  const segments = path.split('/');
  segments.forEach((segment, index) => {
    const last = index === segments.length - 1;
    if (segment === '..' || segment === '.') throw problem(`it contains a "${segment}" segment`);
    if (segment.length === 0) throw problem('it contains an empty segment (// or a trailing /)');
    // A prefix's partial last segment like ".tid" could still name real keys; only whole
    // segments are reserved.
    if (segment.startsWith(TEMP_PREFIX) && !(partialLast && last && segment.length < TEMP_PREFIX.length)) {
      throw problem(`segments starting with ${TEMP_PREFIX} are reserved for temporary files`);
    }
  });
}

/** Options of {@link LocalStore}. */
export interface LocalStoreOptions {
  /**
   * fsync each written file and its directory before put resolves. Turning it off trades crash
   * durability for speed; only for throwaway stores.
   * @default true
   */
  fsync?: boolean;
}

/**
 * An {@link ObjectStore} over a local directory: key `a/b/c` is the file `<root>/a/b/c`. Unlike
 * S3, a key cannot be both an object and the parent of other keys (`a` and `a/b`); Tidemark's key
 * layout never needs that.
 */
export class LocalStore implements ObjectStore {
  readonly url: string;
  /** Absolute path of the root directory. */
  readonly root: string;
  private readonly fsync: boolean;
  vault?: Vault;

  constructor(root: string, options: LocalStoreOptions = {}) {
    this.root = resolve(root);
    this.url = pathToFileURL(this.root).href;
    this.fsync = options.fsync ?? true;
  }

  /** Creates the root directory if it is missing (openStore calls it; put creates it anyway). */
  async init(): Promise<void> {
    await this.fs('create the store directory', this.root, async () => {
      await mkdir(this.root, { recursive: true, mode: DIR_MODE });
      if (this.fsync) await syncDir(dirname(this.root));
    });
  }

  async put(key: string, body: Buffer): Promise<void> {
    const path = this.pathOf(key);
    const dir = dirname(path);
    await this.fs('write', key, async () => {
      await mkdir(dir, { recursive: true, mode: DIR_MODE });
      // Same directory as the target, so the rename is atomic: readers see the old object or the
      // new one, never a prefix of it.
      const temp = join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
      try {
        const handle = await open(temp, 'wx', FILE_MODE);
        try {
          await handle.writeFile(body);
          if (this.fsync) await handle.sync();
        } finally {
          await handle.close();
        }
        await rename(temp, path);
      } catch (err) {
        await rm(temp, { force: true }).catch(() => undefined);
        throw err;
      }
      // The rename is only durable once the directory entry is, and a directory that mkdir just
      // created (here or by a concurrent put) only once its own entry is: sync up to the root.
      if (this.fsync) await this.syncUpToRoot(dir);
    });
  }

  async get(key: string, options: GetOptions = {}): Promise<Buffer> {
    const path = this.pathOf(key);
    try {
      if (options.maxBytes === undefined) return await readFile(path);
      const handle = await open(path, 'r');
      try {
        const { size } = await handle.stat();
        if (size > options.maxBytes) throw oversized(key, this.url, size, options.maxBytes);
        return await handle.readFile();
      } finally {
        await handle.close();
      }
    } catch (err) {
      if (err instanceof OversizedObjectError) throw err;
      if (isMissing(err)) throw new ObjectNotFoundError(key, this.url, { cause: err });
      throw this.wrap('read', key, err);
    }
  }

  async has(key: string): Promise<boolean> {
    const path = this.pathOf(key);
    try {
      return (await stat(path)).isFile();
    } catch (err) {
      if (isMissing(err)) return false;
      throw this.wrap('check', key, err);
    }
  }

  async list(prefix: string): Promise<string[]> {
    checkListPrefix(prefix, this.url);
    // Only the directory that holds the prefix's last complete segment can contain matches.
    const slash = prefix.lastIndexOf('/');
    const base = slash < 0 ? '' : prefix.slice(0, slash);
    const keys: string[] = [];
    await this.fs('list', prefix, () => this.walk(base, keys));
    return keys.filter((key) => key.startsWith(prefix)).sort(compareKeys);
  }

  async listObjects(prefix: string): Promise<StoredObject[]> {
    const objects: StoredObject[] = [];
    for (const key of await this.list(prefix)) {
      try {
        const info = await stat(this.pathOf(key));
        objects.push({ key, size: info.size, lastModifiedMs: Math.floor(info.mtimeMs) });
      } catch (err) {
        // Deleted between the listing and the stat: not an object any more.
        if (!isMissing(err)) throw this.wrap('stat', key, err);
      }
    }
    return objects;
  }

  async delete(key: string): Promise<void> {
    const path = this.pathOf(key);
    try {
      await unlink(path);
    } catch (err) {
      // EISDIR/EPERM: the key names a directory of other keys, so no object of that name exists.
      if (isMissing(err) || hasCode(err, 'EISDIR') || hasCode(err, 'EPERM')) return;
      throw this.wrap('delete', key, err);
    }
    // Empty directories are left behind on purpose: removing them would race with a concurrent
    // put into the same directory, and they cost nothing in a listing.
  }

  async close(): Promise<void> {
    // Nothing is held open between calls.
  }

  private pathOf(key: string): string {
    checkObjectKey(key, this.url);
    const path = join(this.root, ...key.split('/'));
    // Defence in depth: checkObjectKey already rules out escapes.
    if (!path.startsWith(this.root + sep)) {
      throw new ConfigError(`object key ${JSON.stringify(key)} resolves outside the store root ${this.root}`);
    }
    return path;
  }

  private async walk(relative: string, into: string[]): Promise<void> {
    let entries: Dirent[];
    try {
      entries = await readdir(relative ? join(this.root, ...relative.split('/')) : this.root, { withFileTypes: true });
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    for (const entry of entries) {
      if (entry.name.startsWith(TEMP_PREFIX)) continue;
      const key = relative ? `${relative}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await this.walk(key, into);
      else if (entry.isFile()) into.push(key);
    }
  }

  private async syncUpToRoot(dir: string): Promise<void> {
    for (let current = dir; ; current = dirname(current)) {
      await syncDir(current);
      if (current === this.root || dirname(current) === current) break;
    }
  }

  private async fs<T>(action: string, what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw this.wrap(action, what, err);
    }
  }

  private wrap(action: string, key: string, err: unknown): Error {
    if (err instanceof TidemarkError) return err;
    const message = `cannot ${action} ${key} in store ${this.url}: ${errorMessage(err)}`;
    if (TRANSIENT_FS_CODES.has(codeOf(err))) {
      return new TransientError(`${message}; no object was changed, try again`, { cause: err });
    }
    return new StoreError(message, { cause: err });
  }
}

/** The error of an object larger than a read allows. */
export function oversized(key: string, store: string, size: number, maxBytes: number): OversizedObjectError {
  return new OversizedObjectError(
    `object ${key} in store ${store} is ${size} bytes, more than the ${maxBytes} bytes it may be (its manifest's record, or the cap for its kind): it was not read; it may have been replaced or planted`,
    key,
  );
}

/** Keys sort by UTF-16 code units, the same order the S3 store returns. */
export function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

function hasCode(err: unknown, code: string): boolean {
  return codeOf(err) === code;
}

/** ENOENT, or ENOTDIR (a parent of the key is a file), or EISDIR (the key names a directory). */
function isMissing(err: unknown): boolean {
  return hasCode(err, 'ENOENT') || hasCode(err, 'ENOTDIR') || hasCode(err, 'EISDIR');
}
