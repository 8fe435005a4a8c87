/**
 * The simulated object store, as the protocol uses it (the objects core/store/object-store.ts
 * holds and core/state/catalog.ts reads): immutable segments, staged partition manifests at `staging/<E>/<worker>`, and
 * checkpoint manifests at `checkpoints/<E>`, whose presence is visibility (G1). Each staged
 * partition carries the leader token of the PREPARE it answered, for `newestStaged`
 * (Catalog.newestStaged). Retention and garbage collection (services/coordinator/store-gc.ts)
 * delete manifests, segments and staged partitions; segments and partitions carry the time they
 * were written (the store's last-modified time, which the sweep's grace period reads).
 *
 * Objects are kept decoded. A staged partition's "sha256" is a fresh token per put, because a
 * real re-stage never has the same bytes (it carries the time it was prepared). Keys are the real
 * ones (core/store/keys.ts). Writes are unconditional, as on s3rver: a put replaces an object.
 */
import type { StoredObject } from '../../services/core/store/object-store.js';
import type { CheckpointManifest, QueueCheckpoint } from '../../services/gen/tidemark/v1/store.js';
import type { JournalEntry } from './broker.js';

export interface StoredSegment {
  queue: string;
  firstOffset: number;
  lastOffset: number;
  entries: JournalEntry[];
  /** When the put landed (virtual ms). */
  writtenAtMs: number;
}

export interface StagedPartition {
  sha256: string;
  epoch: number;
  workerId: string;
  /** The token of the PREPARE the worker staged it for (PartitionManifest.leader_token). */
  leaderToken: number;
  roundId: string;
  queues: QueueCheckpoint[];
  /** When the put landed (virtual ms). */
  writtenAtMs: number;
}

export class ObjectStoreModel {
  readonly segments = new Map<string, StoredSegment>();
  readonly partitions = new Map<string, StagedPartition>();
  readonly manifests = new Map<number, CheckpointManifest>();
  private puts = 0;
  /** Called after every manifest write that landed, with the one it replaced, for the checker. */
  onManifest: (manifest: CheckpointManifest, replaced: CheckpointManifest | undefined, writer: string) => void = () => {};
  /** Called after every delete that removed an object (key), for the checker. */
  onDelete: (key: string, writer: string) => void = () => {};

  /** Epochs of every visible checkpoint, ascending (Catalog.epochs). */
  epochs(): number[] {
    return [...this.manifests.keys()].sort((a, b) => a - b);
  }

  latest(): CheckpointManifest | undefined {
    const epochs = this.epochs();
    return epochs.length === 0 ? undefined : this.manifests.get(epochs[epochs.length - 1]);
  }

  /**
   * Catalog.newestStaged: the newest epoch any partition is staged for, and the newest leader
   * token among that epoch's partitions (0, 0 if none). The real one lists `staging/` and reads
   * the partitions; here that is one read.
   */
  newestStaged(): { epoch: number; leaderToken: number } {
    let epoch = 0;
    for (const p of this.partitions.values()) epoch = Math.max(epoch, p.epoch);
    let leaderToken = 0;
    for (const p of this.partitions.values()) if (p.epoch === epoch) leaderToken = Math.max(leaderToken, p.leaderToken);
    return { epoch, leaderToken };
  }

  /** A manifest write landing: from now on the checkpoint is visible (Catalog.publish). */
  putManifest(manifest: CheckpointManifest, writer: string): void {
    const replaced = this.manifests.get(manifest.epoch);
    this.manifests.set(manifest.epoch, manifest);
    this.onManifest(manifest, replaced, writer);
  }

  /** DELETE of a checkpoint manifest: the checkpoint is no longer visible. */
  deleteManifest(epoch: number, writer: string): void {
    if (this.manifests.delete(epoch)) this.onDelete(`checkpoints/${epoch}`, writer);
  }

  /** DELETE of a segment or a staged partition, by key. */
  deleteObject(key: string, writer: string): void {
    if (this.segments.delete(key) || this.partitions.delete(key)) this.onDelete(key, writer);
  }

  /** ObjectStore.listObjects of `segments/` (the sizes do not matter here). */
  segmentObjects(): StoredObject[] {
    return [...this.segments.entries()].map(([key, s]) => ({ key, size: s.entries.length, lastModifiedMs: s.writtenAtMs }));
  }

  /** ObjectStore.listObjects of `staging/`. */
  stagedObjects(): StoredObject[] {
    return [...this.partitions.entries()].map(([key, p]) => ({ key, size: p.queues.length, lastModifiedMs: p.writtenAtMs }));
  }

  /** A new content token for a staged partition. */
  nextSha(): string {
    this.puts += 1;
    return `sha-${this.puts}`;
  }
}
