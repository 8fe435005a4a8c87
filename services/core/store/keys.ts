/**
 * The store layout, format version 1 (docs/STORE-FORMAT.md): where every object lives and how
 * manifests are framed. Keys are relative to the store root and use '/' as separator.
 *
 *   segments/<vhost>/<queue>/<first>-<last>-<sha256[0:16]>.seg   immutable, content-addressed
 *   staging/<epoch>/<worker>.partition                            a worker's vote for an epoch
 *   checkpoints/<epoch>.manifest                                  presence = visibility (G1)
 *
 * vhost, queue and worker names are percent-encoded (encodeURIComponent, and '.'/'..' spelled
 * out) so any name is one safe path segment, in a digest form where that would be too long for a
 * file name (see encodeKeyPart); offsets and epochs are 20-digit zero-padded decimals so listing
 * order is numeric order.
 */
import { createHash } from 'node:crypto';
import { CheckpointManifest, PartitionManifest } from '../../gen/tidemark/v1/store.js';
import { DIGEST_HEX_LENGTH, endsLikeDigest, nameDigest } from '../format/bounded-name.js';
import { CorruptDataError, NameError, OversizedObjectError, UnauthenticatedDataError, errorMessage } from '../errors.js';
import { decompressBounded, gzipCodec } from '../format/segment-codec.js';
import { isSealed, requireVault, type Vault } from '../crypto/vault.js';

/** Newest manifest format version this code reads; it writes this one. */
export const MANIFEST_FORMAT_VERSION = 1;

export const SEGMENTS_PREFIX = 'segments/';
export const STAGING_PREFIX = 'staging/';
export const CHECKPOINTS_PREFIX = 'checkpoints/';
/** The newest checkpoint that passed `tidemark verify` (JSON; docs/STORE-FORMAT.md). */
export const VERIFIED_KEY = 'verified/latest';

const MANIFEST_MAGIC = Buffer.from('TMMANIF1', 'ascii');
const PARTITION_MAGIC = Buffer.from('TMPART01', 'ascii');

/** Bytes of one path segment of a key: a file name in the local-directory store. */
export const MAX_KEY_PART_BYTES = 255;

/**
 * Bytes of the longest key this layout makes (a segment key with two parts of
 * {@link MAX_KEY_PART_BYTES}). S3 limits a key, the store's prefix included, to 1,024 bytes.
 */
export const MAX_KEY_BYTES = SEGMENTS_PREFIX.length + 2 * (MAX_KEY_PART_BYTES + 1) + 2 * 20 + 16 + '--.seg'.length;

const PARTITION_SUFFIX = '.partition';

/**
 * Bytes of the worker part of a partition key. The part ends a key, so it makes a file name with
 * `.partition`, and file-backed S3 servers add suffixes to that (s3rver: `._S3rver_metadata.json`).
 */
const PARTITION_WORKER_PART_BYTES = 200;

/**
 * A vhost, queue or worker name as one path segment of a key, of at most `maxBytes` bytes.
 * The name percent-encoded (encodeURIComponent, '.' and '..' spelled out) when that fits and does
 * not end like a digest form; otherwise the digest form (bounded-name.ts): as many whole encoded
 * characters of the name as fit, `~`, and the sha256 of the name. Distinct names give distinct
 * parts; nothing reads a name back from a part (manifests and segments carry the real names).
 */
export function encodeKeyPart(name: string, maxBytes = MAX_KEY_PART_BYTES): string {
  if (name === '') throw new NameError('an empty name cannot be part of a store key');
  // encodeURIComponent leaves '.' alone; '.' and '..' would be path traversal in a directory store.
  if (name === '.') return '%2E';
  if (name === '..') return '%2E%2E';
  const encoded = encodeURIComponent(name);
  if (encoded.length <= maxBytes && !endsLikeDigest(encoded)) return encoded;
  const room = maxBytes - 1 - DIGEST_HEX_LENGTH;
  let prefix = '';
  for (const ch of name) {
    const part = encodeURIComponent(ch);
    if (prefix.length + part.length > room) break;
    prefix += part;
  }
  return `${prefix}~${nameDigest(name)}`;
}

/** An offset or epoch as a 20-digit decimal (2^64 has 20 digits). */
export function pad20(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new NameError(`store key number must be a non-negative safe integer, got ${n}`);
  return String(n).padStart(20, '0');
}

/** Prefix of every segment of one queue. */
export function segmentPrefix(vhost: string, queue: string): string {
  return `${SEGMENTS_PREFIX}${encodeKeyPart(vhost)}/${encodeKeyPart(queue)}/`;
}

/** The deterministic key of a segment: re-uploading the same bytes writes the same object. */
export function segmentKey(vhost: string, queue: string, first: number, last: number, sha256: string): string {
  if (!/^[0-9a-f]{16,}$/.test(sha256)) throw new NameError(`segment sha256 must be lowercase hex, got "${sha256}"`);
  return `${segmentPrefix(vhost, queue)}${pad20(first)}-${pad20(last)}-${sha256.slice(0, 16)}.seg`;
}

/**
 * The name of a fence range of a queue: offsets first..last hold only fences, and no object is
 * stored for them (docs/STORE-FORMAT.md). It looks like a key so that refs stay unique by key.
 */
export function fenceRangeKey(vhost: string, queue: string, first: number, last: number): string {
  return `${segmentPrefix(vhost, queue)}${pad20(first)}-${pad20(last)}.fences`;
}

/** The key of the checkpoint manifest of an epoch. */
export function checkpointKey(epoch: number): string {
  return `${CHECKPOINTS_PREFIX}${pad20(epoch)}.manifest`;
}

/** The epoch of a checkpoint manifest key, or undefined if the key is not one. */
export function parseCheckpointKey(key: string): number | undefined {
  const m = /^checkpoints\/(\d{20})\.manifest$/.exec(key);
  if (!m) return undefined;
  const epoch = Number(m[1]);
  return Number.isSafeInteger(epoch) ? epoch : undefined;
}

/** Prefix of every partition manifest staged for an epoch. */
export function stagingPrefix(epoch: number): string {
  return `${STAGING_PREFIX}${pad20(epoch)}/`;
}

/** The epoch of a staged partition's key, or undefined for any other key. */
export function parseStagingKey(key: string): number | undefined {
  const m = /^staging\/(\d{20})\/[^/]+\.partition$/.exec(key);
  if (!m) return undefined;
  const epoch = Number(m[1]);
  return Number.isSafeInteger(epoch) ? epoch : undefined;
}

/** The key of the partition manifest a worker stages for an epoch. */
export function partitionKey(epoch: number, workerId: string): string {
  return `${stagingPrefix(epoch)}${encodeKeyPart(workerId, PARTITION_WORKER_PART_BYTES)}${PARTITION_SUFFIX}`;
}

/** The most bytes a stored checkpoint or partition manifest may have: larger ones are refused unread. */
export const MAX_MANIFEST_BYTES = 256 * 1024 ** 2;

/** The most a manifest may decompress to: 64 times its stored size plus 16 MiB, at most 1 GiB. */
export function manifestDecodedLimit(storedBytes: number): number {
  return Math.min(1024 ** 3, 16 * 1024 ** 2 + 64 * storedBytes);
}

/** A decoded manifest and whether it was sealed (encrypted and authenticated) in the store. */
export interface OpenedManifest<T> {
  manifest: T;
  encrypted: boolean;
}

/**
 * Frame a checkpoint manifest: `TMMANIF1`, sha256 of the rest (32 raw bytes), gzip(protobuf);
 * sealed whole by `vault` when one is given (crypto/vault.ts).
 */
export async function encodeManifest(m: CheckpointManifest, vault?: Vault): Promise<Buffer> {
  const framed = await frame(MANIFEST_MAGIC, Buffer.from(CheckpointManifest.encode(m).finish()));
  return vault ? vault.seal(framed, 'checkpoint') : framed;
}

/** Verify and decode a checkpoint manifest; throws CorruptDataError naming the key. */
export async function decodeManifest(bytes: Buffer, key: string, vault?: Vault): Promise<CheckpointManifest> {
  return (await openManifest(bytes, key, vault)).manifest;
}

/**
 * Verify (the tag of a sealed one, the checksum) and decode a checkpoint manifest, saying whether
 * it was sealed. A plaintext one is decoded as before: whether it may be trusted when a master key
 * is configured is the catalog's call (Catalog.get), which knows when encryption began.
 */
export async function openManifest(bytes: Buffer, key: string, vault?: Vault): Promise<OpenedManifest<CheckpointManifest>> {
  const encrypted = isSealed(bytes);
  const framed = encrypted ? await requireVault(vault, 'checkpoint manifest', key).open(bytes, 'checkpoint', key) : bytes;
  const manifest = await unframe(framed, key, MANIFEST_MAGIC, 'checkpoint manifest', (b) => CheckpointManifest.decode(b));
  return { manifest, encrypted };
}

/** Frame a partition manifest: `TMPART01`, sha256 of the rest (32 raw bytes), gzip(protobuf); sealed by `vault` if given. */
export async function encodePartition(p: PartitionManifest, vault?: Vault): Promise<Buffer> {
  const framed = await frame(PARTITION_MAGIC, Buffer.from(PartitionManifest.encode(p).finish()));
  return vault ? vault.seal(framed, 'partition') : framed;
}

/**
 * Verify and decode a partition manifest; throws CorruptDataError naming the key. With a vault, a
 * plaintext partition is refused (UnauthenticatedDataError): partitions are short-lived, and one
 * planted in staging/ could otherwise become a checkpoint through recovery.
 */
export async function decodePartition(bytes: Buffer, key: string, vault?: Vault): Promise<PartitionManifest> {
  if (isSealed(bytes)) {
    const framed = await requireVault(vault, 'partition manifest', key).open(bytes, 'partition', key);
    return unframe(framed, key, PARTITION_MAGIC, 'partition manifest', (b) => PartitionManifest.decode(b));
  }
  if (vault) {
    throw new UnauthenticatedDataError(`partition manifest ${key} is not encrypted, but this store is (a master key is configured): it was not written by a Tidemark worker of this store, or predates its encryption; it was not used`, key);
  }
  return unframe(bytes, key, PARTITION_MAGIC, 'partition manifest', (b) => PartitionManifest.decode(b));
}

async function frame(magic: Buffer, proto: Buffer): Promise<Buffer> {
  const body = await gzipCodec.compress(proto);
  return Buffer.concat([magic, createHash('sha256').update(body).digest(), body]);
}

/** Check magic and checksum before anything else is read, then gunzip and decode. */
async function unframe<T extends { formatVersion: number }>(
  bytes: Buffer,
  key: string,
  magic: Buffer,
  what: string,
  decode: (proto: Buffer) => T,
): Promise<T> {
  const corrupt = (problem: string, cause?: unknown) =>
    new CorruptDataError(`${what} ${key} is corrupt: ${problem}; it was not used`, key, { cause });
  if (bytes.length < magic.length + 32) throw corrupt(`only ${bytes.length} bytes, shorter than its header`);
  const got = bytes.subarray(0, magic.length);
  if (!got.equals(magic)) {
    throw corrupt(`magic is ${JSON.stringify(got.toString('latin1'))}, expected ${JSON.stringify(magic.toString('ascii'))}`);
  }
  const stored = bytes.subarray(magic.length, magic.length + 32);
  const body = bytes.subarray(magic.length + 32);
  const actual = createHash('sha256').update(body).digest();
  if (!actual.equals(stored)) {
    throw corrupt(`checksum mismatch: header says sha256 ${stored.toString('hex')}, content has ${actual.toString('hex')}`);
  }
  let proto: Buffer;
  try {
    proto = await decompressBounded(gzipCodec, body, manifestDecodedLimit(bytes.length), what, key);
  } catch (err) {
    if (err instanceof OversizedObjectError) throw err;
    throw corrupt(`gzip decompression failed: ${errorMessage(err)}`, err);
  }
  let message: T;
  try {
    message = decode(proto);
  } catch (err) {
    throw corrupt(`protobuf decode failed: ${errorMessage(err)}`, err);
  }
  if (message.formatVersion > MANIFEST_FORMAT_VERSION) {
    throw corrupt(`format version ${message.formatVersion} is newer than this Tidemark reads (${MANIFEST_FORMAT_VERSION}); upgrade Tidemark`);
  }
  return message;
}
