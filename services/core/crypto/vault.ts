/**
 * Encryption at rest (docs/SECURITY.md, "Encryption at rest"): the envelope around every object
 * that carries message data or cut metadata (segments, staged partitions, checkpoint manifests).
 *
 *   sealed object = "TMSEAL01" | 0x01 (AES-256-GCM) | id length | data key id | nonce (12)
 *                   | ciphertext | tag (16)
 *
 * The header up to the nonce, and the object's purpose (`segment`, `partition`, `checkpoint`),
 * are authenticated with the ciphertext, so an object cannot be altered, re-keyed, or passed off
 * as another kind without the tag failing.
 *
 * Data keys: a random 32-byte key per process and UTC day, wrapped by the master key through the
 * KeyProvider and stored alone at `keys/<id>.key`. Objects name their data key in the header, so
 * rotating the master key rewrites only those small objects, never a segment ({@link Vault.rotate}).
 *
 * Nonces are random, 12 bytes from the system's CSPRNG per object: GCM's standard construction,
 * safe for 2^32 objects under one key (NIST SP 800-38D), and a data key seals at most one
 * process-day of objects. Sealing the same plaintext twice gives different bytes, so a segment
 * uploaded again (a flush retried after a failed put) gets a new content-addressed name; the
 * first attempt, if it was stored at all, is referenced by no manifest and garbage collection
 * sweeps it. Objects written by earlier versions carry nonces derived from HMAC-SHA256 of their
 * plaintext; the nonce is in the header, so they open unchanged. The HMAC pass cost more than
 * the cipher on a two-core host (docs/SECURITY.md#what-encryption-costs).
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { CorruptDataError, KeyUnavailableError, ObjectNotFoundError, UnauthenticatedDataError, errorMessage } from '../errors.js';
import { KEY_BYTES, type KeyProvider } from './key-provider.js';

/** What the vault needs of the object store: where wrapped data keys are kept. */
export interface KeyStore {
  get(key: string, options?: { maxBytes?: number }): Promise<Buffer>;
  put(key: string, body: Buffer): Promise<void>;
  list(prefix: string): Promise<string[]>;
}

/** What a sealed object is; bound into its tag. */
export type SealPurpose = 'segment' | 'partition' | 'checkpoint';

export const SEAL_MAGIC = Buffer.from('TMSEAL01', 'ascii');
const ALGORITHM_AES_256_GCM = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/**
 * Plaintext encrypted per cipher call while sealing: node:crypto allocates an output buffer per
 * call, and 64 KiB slices sealed a 4 MiB segment in about half the CPU time of 256 KiB ones here.
 */
const SEAL_SLICE_BYTES = 64 * 1024;

/** Where wrapped data keys live. Garbage collection never deletes under it (store-gc.ts). */
export const KEYS_PREFIX = 'keys/';
const DATA_KEY_ID = /^dk-\d{8}-[0-9a-f]{16}$/;
/** A wrapped data key object is a few hundred bytes; anything past this is not one. */
const MAX_KEY_OBJECT_BYTES = 4096;

/** The key of the object holding data key `id`. */
export function dataKeyObjectKey(id: string): string {
  return `${KEYS_PREFIX}${id}.key`;
}

/** True when `bytes` start like a sealed object. */
export function isSealed(bytes: Buffer): boolean {
  return bytes.length >= SEAL_MAGIC.length && bytes.subarray(0, SEAL_MAGIC.length).equals(SEAL_MAGIC);
}

/** The data key id a sealed object names, or undefined if it is not sealed or its header is cut short. */
export function sealedKeyId(bytes: Buffer): string | undefined {
  return isSealed(bytes) ? parseHeader(bytes)?.keyId : undefined;
}

interface Header {
  keyId: string;
  nonce: Buffer;
  /** Bytes of the header (authenticated as additional data). */
  end: number;
}

function parseHeader(bytes: Buffer): Header | undefined {
  const at = SEAL_MAGIC.length;
  if (bytes.length < at + 2) return undefined;
  const idLength = bytes[at + 1];
  const nonceAt = at + 2 + idLength;
  const end = nonceAt + NONCE_BYTES;
  if (bytes[at] !== ALGORITHM_AES_256_GCM || bytes.length < end + TAG_BYTES) return undefined;
  return { keyId: bytes.subarray(at + 2, nonceAt).toString('latin1'), nonce: bytes.subarray(nonceAt, end), end };
}

interface DataKey {
  id: string;
  /** AES-256-GCM key. */
  cipherKey: Buffer;
}

/**
 * The cipher key a data key gives, through HKDF-SHA256. node:crypto's cipher runs on the calling
 * thread; WebCrypto would move it to the thread pool, but copies every input, and measured here
 * it made capture slower: the pool's thread competes with the broker for the second core.
 */
function derive(id: string, secret: Buffer): DataKey {
  return { id, cipherKey: Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), 'tidemark object cipher', 32)) };
}

/** What a data key object holds (JSON). */
interface DataKeyObject {
  format: 1;
  id: string;
  masterKeyId: string;
  /** Base64 of the provider's wrapped form. */
  wrapped: string;
  createdAtMs: number;
}

/** What {@link Vault.rotate} did. */
export interface RotationReport {
  /** The master key every data key is now wrapped with. */
  masterKeyId: string;
  /** Data keys re-wrapped by this call. */
  rewrapped: number;
  /** Data keys already wrapped by the current master key. */
  current: number;
  /** Data keys that could not be re-wrapped, with why (their master key is not configured, ...). */
  failed: Array<{ id: string; masterKeyId: string; reason: string }>;
}

/** Options of {@link Vault}. */
export interface VaultOptions {
  /** Clock for data key ages. @default Date.now */
  now?: () => number;
  /** A process starts a new data key once its current one is this old. @default 1 day */
  dataKeyLifetimeMs?: number;
}

/**
 * Seals and opens store objects with data keys kept (wrapped) in the store itself. One per
 * process: a process's data key is its own, made on its first write.
 */
export class Vault {
  private readonly now: () => number;
  private readonly lifetimeMs: number;
  private current?: { createdAtMs: number; key: Promise<DataKey> };
  private readonly opened = new Map<string, Promise<DataKey>>();

  constructor(
    private readonly store: KeyStore,
    readonly provider: KeyProvider,
    options: VaultOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.lifetimeMs = options.dataKeyLifetimeMs ?? 86_400_000;
  }

  /** Encrypts `plain` as an object of `purpose`. */
  async seal(plain: Buffer, purpose: SealPurpose): Promise<Buffer> {
    const key = await this.currentKey();
    const id = Buffer.from(key.id, 'latin1');
    const nonce = randomBytes(NONCE_BYTES);
    const header = Buffer.concat([SEAL_MAGIC, Buffer.from([ALGORITHM_AES_256_GCM, id.length]), id, nonce]);
    const cipher = createCipheriv('aes-256-gcm', key.cipherKey, nonce);
    cipher.setAAD(Buffer.concat([header, Buffer.from(purpose)]));
    // Encrypted a slice at a time straight into the object: a third less CPU than encrypting
    // whole and concatenating (one cold copy of a 4 MiB segment fewer).
    const sealed = Buffer.allocUnsafe(header.length + plain.length + TAG_BYTES);
    let at = header.copy(sealed, 0);
    for (let from = 0; from < plain.length; from += SEAL_SLICE_BYTES) at += cipher.update(plain.subarray(from, from + SEAL_SLICE_BYTES)).copy(sealed, at);
    at += cipher.final().copy(sealed, at);
    cipher.getAuthTag().copy(sealed, at);
    return sealed;
  }

  /**
   * Decrypts a sealed object of `purpose`, stored at `objectKey` (for errors). Throws
   * UnauthenticatedDataError when the tag fails (altered, forged, or another purpose), and
   * KeyUnavailableError when its data key cannot be had.
   */
  async open(bytes: Buffer, purpose: SealPurpose, objectKey: string): Promise<Buffer> {
    const header = parseHeader(bytes);
    if (!header || !isSealed(bytes)) {
      throw new UnauthenticatedDataError(`${purpose} ${objectKey} is not a sealed object (bad header); nothing from it was used`, objectKey);
    }
    if (!DATA_KEY_ID.test(header.keyId)) {
      throw new UnauthenticatedDataError(`${purpose} ${objectKey} names an impossible data key id ${JSON.stringify(header.keyId)}: it was forged; nothing from it was used`, objectKey);
    }
    const key = await this.dataKey(header.keyId);
    try {
      const decipher = createDecipheriv('aes-256-gcm', key.cipherKey, header.nonce);
      decipher.setAAD(Buffer.concat([bytes.subarray(0, header.end), Buffer.from(purpose)]));
      decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
      const body = decipher.update(bytes.subarray(header.end, bytes.length - TAG_BYTES));
      const last = decipher.final(); // checks the tag; GCM has nothing left to give
      return last.length === 0 ? body : Buffer.concat([body, last]);
    } catch (err) {
      throw new UnauthenticatedDataError(
        `${purpose} ${objectKey} failed authentication under data key ${header.keyId}: it was altered or forged (or is not a ${purpose}); nothing from it was used`,
        objectKey,
        { cause: err },
      );
    }
  }

  /**
   * Makes this process's data key now (stored, wrapped) rather than at the first write: a worker
   * calls it as it starts, so that no capture waits for it.
   */
  async prepare(): Promise<void> {
    await this.currentKey();
  }

  /**
   * Re-wraps every data key with the provider's current master key; segments and manifests are
   * not touched (their headers name data keys, not master keys). Idempotent: a key already under
   * the current master key is left alone, so an interrupted rotation is finished by running it again.
   */
  async rotate(): Promise<RotationReport> {
    const report: RotationReport = { masterKeyId: this.provider.keyId, rewrapped: 0, current: 0, failed: [] };
    for (const objectKey of await this.store.list(KEYS_PREFIX)) {
      const id = objectKey.slice(KEYS_PREFIX.length).replace(/\.key$/, '');
      if (!DATA_KEY_ID.test(id)) continue;
      try {
        const object = await this.readKeyObject(id);
        if (object.masterKeyId === this.provider.keyId) {
          report.current += 1;
          continue;
        }
        const secret = await this.provider.unwrap({ masterKeyId: object.masterKeyId, blob: Buffer.from(object.wrapped, 'base64') }, contextOf(id));
        const wrapped = await this.provider.wrap(secret, contextOf(id));
        await this.store.put(objectKey, keyObjectBytes({ ...object, masterKeyId: wrapped.masterKeyId, wrapped: wrapped.blob.toString('base64') }));
        report.rewrapped += 1;
      } catch (err) {
        report.failed.push({ id, masterKeyId: (err as KeyUnavailableError).keyId ?? '', reason: errorMessage(err) });
      }
    }
    return report;
  }

  private currentKey(): Promise<DataKey> {
    const now = this.now();
    if (!this.current || now - this.current.createdAtMs >= this.lifetimeMs) {
      const key = this.createKey(now);
      const entry = { createdAtMs: now, key };
      this.current = entry;
      // A key that could not be stored is never used: the next seal makes another.
      key.catch(() => {
        if (this.current === entry) this.current = undefined;
      });
    }
    return this.current.key;
  }

  /** A new data key, durable in the store (wrapped) before any object is sealed with it. */
  private async createKey(now: number): Promise<DataKey> {
    const day = new Date(now).toISOString().slice(0, 10).replace(/-/g, '');
    const id = `dk-${day}-${randomBytes(8).toString('hex')}`;
    const secret = randomBytes(KEY_BYTES);
    const wrapped = await this.provider.wrap(secret, contextOf(id));
    await this.store.put(dataKeyObjectKey(id), keyObjectBytes({ format: 1, id, masterKeyId: wrapped.masterKeyId, wrapped: wrapped.blob.toString('base64'), createdAtMs: now }));
    const key = derive(id, secret);
    this.opened.set(id, Promise.resolve(key));
    return key;
  }

  private dataKey(id: string): Promise<DataKey> {
    let key = this.opened.get(id);
    if (!key) {
      key = this.loadKey(id);
      this.opened.set(id, key);
      // A failure is not cached: the key may be configured or the store reachable next time.
      key.catch(() => this.opened.delete(id));
    }
    return key;
  }

  private async loadKey(id: string): Promise<DataKey> {
    const object = await this.readKeyObject(id);
    const secret = await this.provider.unwrap({ masterKeyId: object.masterKeyId, blob: Buffer.from(object.wrapped, 'base64') }, contextOf(id));
    return derive(id, secret);
  }

  private async readKeyObject(id: string): Promise<DataKeyObject> {
    const key = dataKeyObjectKey(id);
    let bytes: Buffer;
    try {
      bytes = await this.store.get(key, { maxBytes: MAX_KEY_OBJECT_BYTES });
    } catch (err) {
      if (err instanceof ObjectNotFoundError) {
        throw new KeyUnavailableError(`data key ${id} is missing from the store (${key} not found): objects sealed with it cannot be read. Nothing was read or published`, id, { cause: err });
      }
      throw err;
    }
    let object: DataKeyObject;
    try {
      object = JSON.parse(bytes.toString('utf8')) as DataKeyObject;
    } catch (err) {
      throw new CorruptDataError(`data key object ${key} is not JSON: it is damaged; nothing was read or published`, key, { cause: err });
    }
    if (object?.format !== 1 || object.id !== id || typeof object.masterKeyId !== 'string' || typeof object.wrapped !== 'string') {
      throw new CorruptDataError(`data key object ${key} is malformed (format, id or wrapped key); nothing was read or published`, key);
    }
    return object;
  }
}

function contextOf(id: string): string {
  return `data key ${id}`;
}

function keyObjectBytes(object: DataKeyObject): Buffer {
  return Buffer.from(`${JSON.stringify(object)}\n`);
}

/** Refuses a vault where one is required (used where a sealed object is met without a key). */
export function requireVault(vault: Vault | undefined, what: string, objectKey: string): Vault {
  if (vault) return vault;
  throw new KeyUnavailableError(
    `${what} ${objectKey} is encrypted, but no master key is configured: set TIDEMARK_MASTER_KEY_FILE (or TIDEMARK_MASTER_KEY) to the store's master key. Nothing was read or published`,
    '',
  );
}
