/**
 * The catalog of visible checkpoints, read from the store alone (G5): a checkpoint exists exactly
 * when its manifest object does. Manifests are immutable, so decoded ones are cached.
 */
import type { CheckpointManifest, QueueCheckpoint, SegmentRef } from '../../gen/tidemark/v1/store.js';
import { NotFoundError, ConfigError } from '../errors.js';
import { STAGING_PREFIX, checkpointKey, decodeManifest, decodePartition, encodeManifest, parseCheckpointKey, parseStagingKey } from '../store/keys.js';
import type { ObjectStore } from '../store/object-store.js';
import { orderSegments } from '../format/segment-reader.js';

export class Catalog {
  private readonly cache = new Map<number, CheckpointManifest>();

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
      const partition = await decodePartition(await this.store.get(key), key).catch(() => undefined);
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
    const manifest = await decodeManifest(await this.store.get(key), key);
    this.cache.set(epoch, manifest);
    return manifest;
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

  /** Writes a manifest: from this moment the checkpoint is visible. */
  async publish(manifest: CheckpointManifest): Promise<void> {
    await this.store.put(checkpointKey(manifest.epoch), await encodeManifest(manifest));
    this.cache.set(manifest.epoch, manifest);
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

  /** The same manifest with every queue entry made full (no chain), to bound chain length. */
  async consolidate(manifest: CheckpointManifest): Promise<CheckpointManifest> {
    const queues: QueueCheckpoint[] = [];
    for (const entry of manifest.queues) {
      const segments = (await this.segmentsOf(entry)).filter((s) => s.firstOffset < entry.cutOffset && s.lastOffset >= entry.startOffset);
      queues.push({ ...entry, segments, baseEpoch: 0 });
    }
    return { ...manifest, queues, full: true };
  }
}
