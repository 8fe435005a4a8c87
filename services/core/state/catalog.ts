/**
 * The catalog of visible checkpoints, read from the store alone (G5): a checkpoint exists exactly
 * when its manifest object does. Manifests are immutable, so decoded ones are cached.
 */
import type { CheckpointManifest, QueueCheckpoint, SegmentRef } from '../../gen/tidemark/v1/store.js';
import { NotFoundError, ConfigError, CorruptDataError, ObjectNotFoundError, UnauthenticatedDataError } from '../errors.js';
import {
  MAX_MANIFEST_BYTES,
  STAGING_PREFIX,
  checkpointKey,
  decodePartition,
  encodeManifest,
  openManifest,
  parseCheckpointKey,
  parseStagingKey,
} from '../store/keys.js';
import { isSealed } from '../crypto/vault.js';
import type { ObjectStore } from '../store/object-store.js';
import { orderSegments } from '../format/segment-reader.js';
import { headOf, historyOf, type QueueHead } from './contents.js';

/** How a checkpoint's manifest is kept: sealed (encrypted and authenticated) or plaintext. */
export type ManifestProtection = 'encrypted' | 'plaintext';

export class Catalog {
  private readonly cache = new Map<number, CheckpointManifest>();
  private readonly protections = new Map<number, ManifestProtection>();
  /** The first epoch written encrypted, as the newest sealed manifest records it; undefined until one is read. */
  private encryptedSince?: number;
  /** Every checkpoint at or below this epoch was found plaintext by encryptionFloor. */
  private scannedPlaintextTo = 0;

  constructor(readonly store: ObjectStore) {}

  /** Epochs of every visible checkpoint, ascending. */
  async epochs(): Promise<number[]> {
    const keys = await this.store.list('checkpoints/');
    return keys
      .map((key) => parseCheckpointKey(key))
      .filter((epoch): epoch is number => epoch !== undefined)
      .sort((a, b) => a - b);
  }

  /**
   * The newest epoch any worker staged a partition for, and the newest leader token among its
   * partitions (0, 0 if none). Rounds that got as far as staging may still be committed by a
   * leader that has not noticed it was deposed, so after Redis loses its counters, new epochs
   * and tokens start above these too. Lists all of staging/: use it only then.
   */
  async newestStaged(): Promise<{ epoch: number; leaderToken: number }> {
    const keys = await this.store.list(STAGING_PREFIX);
    let epoch = 0;
    for (const key of keys) epoch = Math.max(epoch, parseStagingKey(key) ?? 0);
    if (epoch === 0) return { epoch: 0, leaderToken: 0 };
    let leaderToken = 0;
    for (const key of keys.filter((k) => parseStagingKey(k) === epoch)) {
      const partition = await this.store
        .get(key, { maxBytes: MAX_MANIFEST_BYTES })
        .then((bytes) => decodePartition(bytes, key, this.store.vault))
        .catch(() => undefined);
      leaderToken = Math.max(leaderToken, partition?.leaderToken ?? 0);
    }
    return { epoch, leaderToken };
  }

  async latestEpoch(): Promise<number> {
    const epochs = await this.epochs();
    return epochs.length === 0 ? 0 : epochs[epochs.length - 1];
  }

  async get(epoch: number): Promise<CheckpointManifest> {
    const cached = this.cache.get(epoch);
    if (cached) return cached;
    const key = checkpointKey(epoch);
    if (!(await this.store.has(key))) {
      throw new NotFoundError(`checkpoint ${epoch} does not exist in ${this.store.url}: list them with "tidemark checkpoints list"`);
    }
    const bytes = await this.store.get(key, { maxBytes: MAX_MANIFEST_BYTES });
    const { manifest, encrypted } = await openManifest(bytes, key, this.store.vault);
    // The epoch inside is authenticated when sealed: an old manifest copied to a new name is refused.
    if (manifest.epoch !== epoch) {
      throw new CorruptDataError(`checkpoint manifest ${key} holds checkpoint ${manifest.epoch}, not ${epoch}: it was copied or forged; it was not used`, key);
    }
    if (encrypted) {
      this.encryptedSince ??= manifest.encryptedSinceEpoch || epoch;
    } else if (this.store.vault) {
      await this.checkPlaintext(epoch, key);
    }
    this.cache.set(epoch, manifest);
    this.protections.set(epoch, encrypted ? 'encrypted' : 'plaintext');
    return manifest;
  }

  /** True when checkpoint `epoch`'s manifest was read (or written) here, sealed. */
  encryptedSeen(epoch: number): boolean {
    return this.protections.get(epoch) === 'encrypted';
  }

  /** Whether checkpoint `epoch`'s manifest is sealed or plaintext (reads it if not yet read). */
  async protection(epoch: number): Promise<ManifestProtection> {
    await this.get(epoch);
    return this.protections.get(epoch)!;
  }

  /**
   * With a master key configured, a plaintext manifest is trusted only if it predates the store's
   * encryption: its epoch is below the first encrypted checkpoint, as the newest sealed manifest
   * records it (an attacker cannot change that record, nor plant a sealed manifest). Until a
   * sealed manifest exists, plaintext ones are read as before.
   */
  private async checkPlaintext(epoch: number, key: string): Promise<void> {
    const since = await this.encryptionFloor();
    if (since !== undefined && epoch >= since) {
      throw new UnauthenticatedDataError(
        `checkpoint manifest ${key} is not encrypted, but every checkpoint of this store from ${since} on is (as its encrypted manifests record): it was forged or replaced; it was not used. Delete it, and check who can write to the store`,
        key,
      );
    }
  }

  /**
   * The first encrypted epoch, from the newest sealed manifest that opens; undefined while none
   * exists. A sealed manifest that is damaged does not stop new checkpoints: the scan goes on
   * down, and if none opens, the lowest damaged one's epoch is the floor (encryption had begun by
   * then). A missing master key does stop it (KeyUnavailableError): nothing can be decided then.
   */
  async encryptionFloor(): Promise<number | undefined> {
    if (this.encryptedSince !== undefined || !this.store.vault) return this.encryptedSince;
    const epochs = (await this.epochs()).filter((e) => e > this.scannedPlaintextTo);
    let damaged: number | undefined;
    for (const e of [...epochs].reverse()) {
      const key = checkpointKey(e);
      const bytes = await this.store.get(key, { maxBytes: MAX_MANIFEST_BYTES }).catch((err: unknown) => {
        if (err instanceof ObjectNotFoundError || err instanceof CorruptDataError) return undefined;
        throw err;
      });
      if (!bytes || !isSealed(bytes)) continue;
      const opened = await openManifest(bytes, key, this.store.vault).catch((err: unknown) => {
        if (err instanceof CorruptDataError) return undefined;
        throw err;
      });
      if (!opened) {
        damaged = e;
        continue;
      }
      this.encryptedSince ??= opened.manifest.encryptedSinceEpoch || e;
      return this.encryptedSince;
    }
    if (damaged !== undefined) return damaged;
    if (epochs.length > 0) this.scannedPlaintextTo = epochs[epochs.length - 1];
    return undefined;
  }

  /** Resolves "latest", an epoch number, or undefined-if-empty. */
  async resolve(id: string): Promise<CheckpointManifest> {
    const text = id.trim().toLowerCase();
    // An empty id is a mistake, not a request for the newest checkpoint.
    if (text === '') throw new ConfigError('no checkpoint id given: use an epoch number or "latest" (see "tidemark checkpoints list")');
    if (text === 'latest') {
      const latest = await this.latestEpoch();
      if (latest === 0) throw new NotFoundError(`no checkpoint exists yet in ${this.store.url}: take one with "tidemark checkpoint --wait"`);
      return this.get(latest);
    }
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new ConfigError(`"${id}" is not a checkpoint id: use an epoch number or "latest"`);
    return this.get(Number(text));
  }

  /** The latest checkpoint committed at or before `atMs`. */
  async at(atMs: number): Promise<CheckpointManifest> {
    const epochs = await this.epochs();
    for (let i = epochs.length - 1; i >= 0; i -= 1) {
      const manifest = await this.get(epochs[i]);
      if (manifest.committedAtMs <= atMs) return manifest;
    }
    throw new NotFoundError(`no checkpoint was committed at or before ${new Date(atMs).toISOString()}`);
  }

  /** Drops a deleted checkpoint's manifest from the cache (store-gc.ts deletes manifests). */
  forget(epoch: number): void {
    this.cache.delete(epoch);
    this.protections.delete(epoch);
  }

  /** Writes a manifest: from this moment the checkpoint is visible. */
  async publish(manifest: CheckpointManifest): Promise<void> {
    const { vault } = this.store;
    let written = manifest;
    if (vault) {
      // Carried from the store's first encrypted checkpoint (or this one is it), so that no
      // plaintext manifest from there on is ever trusted (checkPlaintext).
      const since = (await this.encryptionFloor()) ?? manifest.epoch;
      written = { ...manifest, encryptedSinceEpoch: since };
      this.encryptedSince = since;
    }
    await this.store.put(checkpointKey(manifest.epoch), await encodeManifest(written, vault));
    this.cache.set(manifest.epoch, written);
    this.protections.set(manifest.epoch, vault ? 'encrypted' : 'plaintext');
  }

  /**
   * Every segment needed to read `entry` back from offset `from` (its start by default),
   * following base epochs down the chain, as far as a link's cut is after `from`: a contents
   * restore reads only what the queue held, not its whole history. A chain link that lost the
   * queue is corrupt, not silently short.
   */
  async segmentsOf(entry: QueueCheckpoint, from = entry.startOffset): Promise<SegmentRef[]> {
    const segments = [...entry.segments];
    let base = entry.baseEpoch;
    const seen = new Set<number>();
    while (base !== 0) {
      if (seen.has(base)) throw new ConfigError(`manifest chain loops at checkpoint ${base}`);
      seen.add(base);
      const manifest = await this.get(base);
      const link = manifest.queues.find((q) => q.definition?.vhost === entry.definition?.vhost && q.definition?.name === entry.definition?.name);
      if (!link) {
        throw new NotFoundError(`checkpoint ${base} holds no entry for ${entry.definition?.vhost}/${entry.definition?.name}, yet a later checkpoint builds on it`);
      }
      // The link holds records before its cut: none of them is needed past `from`.
      if (link.cutOffset <= from) break;
      segments.push(...link.segments);
      base = link.baseEpoch;
    }
    return orderSegments(segments.filter((s) => s.lastOffset >= from));
  }

  /**
   * The same manifest with every queue entry made full (no chain), to bound chain length
   * (consolidatedEntry). `historyFrom` says where retention lets each entry's history go.
   */
  async consolidate(manifest: CheckpointManifest, historyFrom?: (entry: QueueCheckpoint) => QueueHead | undefined): Promise<CheckpointManifest> {
    const queues: QueueCheckpoint[] = [];
    for (const entry of manifest.queues) {
      const kept = keptHistory(entry, await this.chainOf(entry), historyFrom?.(entry));
      queues.push(consolidatedEntry(entry, await this.segmentsOf(entry), kept));
    }
    return { ...manifest, queues, full: true };
  }

  /**
   * An incremental entry read through a chain whose full link let history go must say so too, or
   * a reader would start at start_offset, below what the chain holds. The leader applies it to
   * every manifest it writes.
   */
  async inheritHistory(manifest: CheckpointManifest): Promise<CheckpointManifest> {
    const queues: QueueCheckpoint[] = [];
    for (const entry of manifest.queues) queues.push(withHistory(entry, keptHistory(entry, await this.chainOf(entry), undefined)));
    return { ...manifest, queues };
  }

  /** The entries `entry` is read through, nearest first; a missing link ends it (segmentsOf reports those). */
  private async chainOf(entry: QueueCheckpoint): Promise<QueueCheckpoint[]> {
    const links: QueueCheckpoint[] = [];
    const seen = new Set<number>();
    for (let base = entry.baseEpoch; base !== 0 && !seen.has(base); ) {
      seen.add(base);
      const manifest = await this.get(base).catch((err: unknown) => {
        if (err instanceof NotFoundError) return undefined;
        throw err;
      });
      const link = manifest?.queues.find((q) => q.definition?.vhost === entry.definition?.vhost && q.definition?.name === entry.definition?.name);
      if (!link) break;
      links.push(link);
      base = link.baseEpoch;
    }
    return links;
  }
}

/**
 * Where `entry`'s kept history begins (pure): the latest of its own, its chain's (links of the
 * same journal, `chain` nearest first) and `wanted` (retention's), never past its head.
 */
export function keptHistory(entry: QueueCheckpoint, chain: QueueCheckpoint[], wanted: QueueHead | undefined): QueueHead {
  let kept = historyOf(entry);
  for (const link of chain) {
    if (link.startOffset !== entry.startOffset) break;
    const linkKept = historyOf(link);
    if (linkKept.offset > kept.offset) kept = linkKept;
  }
  const head = headOf(entry);
  if (wanted && wanted.offset > kept.offset) kept = wanted.offset >= head.offset ? head : wanted;
  return kept;
}

/** `entry` saying its history begins at `kept` (history_offset/history_messages, historyOf). */
export function withHistory(entry: QueueCheckpoint, kept: QueueHead): QueueCheckpoint {
  return kept.offset > entry.startOffset ? { ...entry, historyOffset: kept.offset, historyMessages: kept.messages } : entry;
}

/**
 * `entry` made full (pure), from every segment of its chain (`chainSegments`, Catalog.segmentsOf):
 * only the segments overlapping [kept, cut), so a full manifest's size follows what its
 * checkpoint needs, not how long the queue has been protected; base 0.
 */
export function consolidatedEntry(entry: QueueCheckpoint, chainSegments: SegmentRef[], kept: QueueHead): QueueCheckpoint {
  const segments = chainSegments.filter((s) => s.firstOffset < entry.cutOffset && s.lastOffset >= kept.offset);
  return { ...withHistory(entry, kept), segments, baseEpoch: 0 };
}
