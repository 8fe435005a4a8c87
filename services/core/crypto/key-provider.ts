/**
 * Master keys: what wraps the data keys that encrypt the store (docs/SECURITY.md, "Encryption at
 * rest"). A {@link KeyProvider} is the seam a KMS can implement later: it wraps a data key with
 * the current master key and unwraps one wrapped by any master key it still holds. The shipped
 * provider keeps master keys in memory, read from a file or the environment at the edge
 * ({@link loadMasterKeys}); nothing else ever sees their bytes.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { ConfigError, KeyUnavailableError } from '../errors.js';

/** A data key wrapped by a master key: opaque to everything but the provider that made it. */
export interface WrappedKey {
  /** Id of the master key that wrapped it (never secret). */
  masterKeyId: string;
  /** The provider's wrapped form. */
  blob: Buffer;
}

/**
 * Wraps and unwraps data keys. `context` is bound to the wrapped form (authenticated), so a
 * wrapped key cannot be passed off as another data key.
 */
export interface KeyProvider {
  /** Id of the master key that new data keys are wrapped with. */
  readonly keyId: string;
  /** Wraps `dataKey` with the current master key. */
  wrap(dataKey: Buffer, context: string): Promise<WrappedKey>;
  /** Unwraps; throws KeyUnavailableError naming the master key id when it cannot. */
  unwrap(wrapped: WrappedKey, context: string): Promise<Buffer>;
}

/** Bytes of a master key and of a data key (AES-256). */
export const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/**
 * The id of a master key: `mk-` and 16 hex digits of an HMAC of a fixed label under the key. It
 * tells keys apart in errors and in wrapped data keys without revealing anything of the key.
 */
export function masterKeyId(key: Buffer): string {
  return `mk-${createHmac('sha256', key).update('tidemark master key id').digest('hex').slice(0, 16)}`;
}

/**
 * The shipped provider: AES-256-GCM key wrapping under master keys held in memory. The first key
 * is current (wraps); the others are previous keys, used only to unwrap during a rotation.
 */
export class LocalKeyProvider implements KeyProvider {
  readonly keyId: string;
  private readonly keys = new Map<string, Buffer>();

  constructor(current: Buffer, previous: Buffer[] = []) {
    for (const key of [current, ...previous]) {
      if (key.length !== KEY_BYTES) throw new ConfigError(`a master key must be ${KEY_BYTES} bytes, got ${key.length}`);
      this.keys.set(masterKeyId(key), key);
    }
    this.keyId = masterKeyId(current);
  }

  /** Ids of every master key held, current first. */
  get keyIds(): string[] {
    return [...this.keys.keys()];
  }

  async wrap(dataKey: Buffer, context: string): Promise<WrappedKey> {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.keys.get(this.keyId)!, nonce);
    cipher.setAAD(Buffer.from(`${this.keyId}\0${context}`));
    const sealed = Buffer.concat([cipher.update(dataKey), cipher.final()]);
    return { masterKeyId: this.keyId, blob: Buffer.concat([nonce, sealed, cipher.getAuthTag()]) };
  }

  async unwrap(wrapped: WrappedKey, context: string): Promise<Buffer> {
    const key = this.keys.get(wrapped.masterKeyId);
    if (!key) {
      throw new KeyUnavailableError(
        `${context} is wrapped by master key ${wrapped.masterKeyId}, which is not configured (configured: ${this.keyIds.join(', ')}). Nothing was read or published; configure that master key (TIDEMARK_MASTER_KEY_FILE, or TIDEMARK_MASTER_KEY_PREVIOUS_FILES while rotating)`,
        wrapped.masterKeyId,
      );
    }
    const { blob } = wrapped;
    if (blob.length !== NONCE_BYTES + KEY_BYTES + TAG_BYTES) {
      throw new KeyUnavailableError(`${context} is damaged: its wrapped form is ${blob.length} bytes; nothing was read or published`, wrapped.masterKeyId);
    }
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, blob.subarray(0, NONCE_BYTES));
      decipher.setAAD(Buffer.from(`${wrapped.masterKeyId}\0${context}`));
      decipher.setAuthTag(blob.subarray(NONCE_BYTES + KEY_BYTES));
      return Buffer.concat([decipher.update(blob.subarray(NONCE_BYTES, NONCE_BYTES + KEY_BYTES)), decipher.final()]);
    } catch (err) {
      throw new KeyUnavailableError(
        `${context} does not unwrap under master key ${wrapped.masterKeyId}: it was altered or forged. Nothing was read or published`,
        wrapped.masterKeyId,
        { cause: err },
      );
    }
  }
}

/** Where master keys come from (config keys masterKey, masterKeyFile, masterKeyPreviousFiles). */
export interface MasterKeySources {
  /** The current master key itself, base64 or hex (TIDEMARK_MASTER_KEY). */
  masterKey?: string;
  /** A file holding the current master key, base64 or hex; owner-only (TIDEMARK_MASTER_KEY_FILE). */
  masterKeyFile?: string;
  /** Comma-separated files of previous master keys, read-only during a rotation. */
  masterKeyPreviousFiles?: string;
}

/**
 * The configured master keys as a provider, or undefined when none is configured (the store is
 * then written in plaintext). Refuses a key file that group or others can read, a key that is not
 * 32 bytes in base64 or hex, and both sources at once. Errors name the file or variable, never
 * the key.
 */
export function loadMasterKeys(sources: MasterKeySources): LocalKeyProvider | undefined {
  const { masterKey, masterKeyFile, masterKeyPreviousFiles } = sources;
  if (masterKey && masterKeyFile) {
    throw new ConfigError('both TIDEMARK_MASTER_KEY and TIDEMARK_MASTER_KEY_FILE are set: set one. Nothing was started');
  }
  const previous = (masterKeyPreviousFiles ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)
    .map((file) => readKeyFile(file));
  if (!masterKey && !masterKeyFile) {
    if (previous.length > 0) throw new ConfigError('TIDEMARK_MASTER_KEY_PREVIOUS_FILES is set without a current master key: set TIDEMARK_MASTER_KEY_FILE too. Nothing was started');
    return undefined;
  }
  const current = masterKeyFile ? readKeyFile(masterKeyFile) : parseKey(masterKey!, 'TIDEMARK_MASTER_KEY');
  return new LocalKeyProvider(current, previous.filter((k) => !k.equals(current)));
}

function readKeyFile(file: string): Buffer {
  let mode: number;
  let text: string;
  try {
    mode = statSync(file).mode;
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read master key file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}. Nothing was started`, { cause: err });
  }
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    throw new ConfigError(`master key file ${file} can be read by others (mode ${(mode & 0o777).toString(8)}): run "chmod 600 ${file}". Nothing was started`);
  }
  return parseKey(text, `master key file ${file}`);
}

/** 32 bytes from 64 hex digits or base64 (surrounding whitespace ignored). */
export function parseKey(text: string, where: string): Buffer {
  const trimmed = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(trimmed) ? Buffer.from(trimmed, 'hex') : /^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed) ? Buffer.from(trimmed, 'base64') : undefined;
  if (!key || key.length !== KEY_BYTES) {
    throw new ConfigError(`${where} does not hold a ${KEY_BYTES}-byte key in hex (64 digits) or base64; make one with "openssl rand -base64 32". Nothing was started`);
  }
  return key;
}
