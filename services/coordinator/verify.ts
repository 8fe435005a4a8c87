/**
 * `tidemark verify`: checks, without restoring anything, that a checkpoint can be restored from
 * the store alone (G5). Three checks, each reporting every problem it finds, not only the first:
 *
 * 1. The manifest chain: the checkpoint's manifest decodes, and so does every earlier manifest a
 *    queue entry builds on (its base epochs, down to a full entry), and each holds that queue.
 * 2. Every segment object the queues need, once per key: present, with the size and sha256 its
 *    SegmentRef records.
 * 3. With `full`: every queue's prefix decodes, its offsets are contiguous over
 *    [startOffset, cutOffset), and it holds the entry's message count. This is the restore's own
 *    verification pass (verifyPrefix), so a queue that passes here passes there.
 *
 * Manifests are read through a Catalog of its own: the coordinator's catalog caches decoded
 * manifests, and a cache of what once decoded must not hide what the store holds now.
 */
import type { VerifyDone, VerifyEvent, VerifyProblem, VerifyProgress } from '../gen/tidemark/v1/admin.js';
import type { CheckpointManifest, QueueCheckpoint, SegmentRef } from '../gen/tidemark/v1/store.js';
import {
  Catalog,
  CorruptDataError,
  errorMessage,
  forEachLimited,
  historyOf,
  IncompletePrefixError,
  isFenceRange,
  NotFoundError,
  ObjectNotFoundError,
  orderSegments,
  OversizedObjectError,
  sha256Hex,
  verifyPrefix,
} from '../core/index.js';
import { checkpointKey, isSealed, type ObjectStore, parseCheckpointKey } from '../core/store/index.js';

export interface VerifyCheckpointOptions {
  /** Also decode every record and check offsets and message counts (check 3). */
  full: boolean;
  /** Stops the verification between objects; it then rejects with the signal's reason. @default never stopped */
  signal?: AbortSignal;
  /** Hears the progress and problem events, then the done event last. */
  emit: (event: VerifyEvent) => void;
  /** Segment objects read at the same time; with `full`, queues decoded at the same time. @default 4 */
  concurrency?: number;
}

/** Least time between two progress events. */
const PROGRESS_INTERVAL_MS = 250;

/** One queue of the checkpoint and every segment its chain lists. */
interface QueueData {
  entry: QueueCheckpoint;
  vhost: string;
  queue: string;
  segments: SegmentRef[];
  /** False when a link of its chain is missing or damaged: `segments` then lacks that link's. */
  chainIntact: boolean;
}

/** A manifest read from the store, or why it cannot be used. */
type ManifestRead = { manifest: CheckpointManifest } | { problem: string };

/**
 * Verifies checkpoint `id` (an epoch number or "latest"). An id that names no checkpoint rejects
 * with the catalog's NotFoundError or ConfigError before any event. Damage is reported as
 * `problem` events and counted in the result. The promise rejects only when the store cannot be
 * read or the signal aborts: then nothing can be said about the data.
 */
export async function verifyCheckpoint(catalog: Catalog, store: ObjectStore, id: string, options: VerifyCheckpointOptions): Promise<VerifyDone> {
  const startedAt = Date.now();
  const epoch = await resolveEpoch(catalog, id);
  const run = new Verification(store, epoch, options);
  const read = await run.readManifest(epoch);
  if ('manifest' in read) {
    const queues = await Promise.all(read.manifest.queues.map((entry) => run.followChain(entry)));
    await run.checkData(queues);
  } else {
    const key = checkpointKey(epoch);
    run.problem({
      key,
      vhost: '',
      queue: '',
      message: `${read.problem}, so no queue of checkpoint ${epoch} can be restored. Put an intact copy of ${key} back into the store, or restore another checkpoint (see "tidemark checkpoints list")`,
    });
  }
  const done = run.done(Date.now() - startedAt);
  options.emit({ event: { $case: 'done', value: done } });
  return done;
}

/**
 * The epoch `id` names, with the catalog's errors for an id that names none. A checkpoint whose
 * own manifest is corrupt still exists: that damage is verify's to report, not an error.
 */
async function resolveEpoch(catalog: Catalog, id: string): Promise<number> {
  try {
    return (await catalog.resolve(id)).epoch;
  } catch (err) {
    const epoch = err instanceof CorruptDataError ? parseCheckpointKey(err.key) : undefined;
    if (epoch === undefined) throw err;
    return epoch;
  }
}

/** One verification: the manifests read, the objects checked, the problems found. */
class Verification {
  private readonly manifests: Catalog;
  private readonly reads = new Map<number, Promise<ManifestRead>>();
  /** Segment keys checked or being checked, so each object is read once. */
  private readonly claimed = new Set<string>();
  private readonly concurrency: number;
  private readonly progress: VerifyProgress = { objectsChecked: 0, objectsTotal: 0, bytesChecked: 0, bytesTotal: 0 };
  private progressSentAt = 0;
  private problems = 0;
  private records = 0;
  /** Epochs whose manifests were read plaintext, and segment keys read plaintext. */
  private readonly plaintextManifests = new Set<number>();
  private readonly plaintextSegments = new Set<string>();

  constructor(
    private readonly store: ObjectStore,
    private readonly epoch: number,
    private readonly options: VerifyCheckpointOptions,
  ) {
    this.manifests = new Catalog(store);
    this.concurrency = Math.max(1, options.concurrency ?? 4);
  }

  problem(problem: VerifyProblem): void {
    this.problems += 1;
    this.options.emit({ event: { $case: 'problem', value: problem } });
  }

  /** Reads the manifest of `epoch` once per verification, however many queues build on it. */
  readManifest(epoch: number): Promise<ManifestRead> {
    let read = this.reads.get(epoch);
    if (!read) {
      read = this.manifests.get(epoch).then(
        async (manifest): Promise<ManifestRead> => {
          if ((await this.manifests.protection(epoch)) === 'plaintext') this.plaintextManifests.add(epoch);
          return { manifest };
        },
        (err: unknown): ManifestRead => {
          if (err instanceof NotFoundError) return { problem: `the manifest of checkpoint ${epoch} (${checkpointKey(epoch)}) is missing from the store ${this.store.url}` };
          if (err instanceof CorruptDataError) return { problem: err.message };
          throw err;
        },
      );
      this.reads.set(epoch, read);
    }
    return read;
  }

  /**
   * Check 1 for one queue: follows its base epochs down to a full entry, as Catalog.segmentsOf
   * does for a restore, but names the link that breaks instead of stopping the verification.
   * A missing parent manifest that no chain passes through is not a problem: nothing reads it.
   */
  async followChain(entry: QueueCheckpoint): Promise<QueueData> {
    const vhost = entry.definition?.vhost ?? '';
    const queue = entry.definition?.name ?? '';
    const where = `${vhost}/${queue}`;
    const data: QueueData = { entry, vhost, queue, segments: [...entry.segments], chainIntact: true };
    const broken = (base: number, what: string) => {
      data.chainIntact = false;
      const key = checkpointKey(base);
      this.problem({
        key,
        vhost,
        queue,
        message:
          `checkpoint ${this.epoch} of ${where} builds on checkpoint ${base}, but ${what}, so the records of ${where} up to checkpoint ${base} cannot be found. ` +
          `Put an intact copy of ${key} back into the store, or restore a checkpoint of ${where} that does not build on checkpoint ${base} (see "tidemark checkpoints list")`,
      });
    };
    const seen = new Set([this.epoch]);
    let base = entry.baseEpoch;
    while (base !== 0) {
      if (seen.has(base)) {
        broken(base, 'the chain of base checkpoints loops back to it');
        break;
      }
      seen.add(base);
      const read = await this.readManifest(base);
      if ('problem' in read) {
        broken(base, read.problem);
        break;
      }
      const link = read.manifest.queues.find((q) => q.definition?.vhost === vhost && q.definition?.name === queue);
      if (!link) {
        broken(base, `checkpoint ${base} holds no entry for ${where}`);
        break;
      }
      data.segments.push(...link.segments);
      base = link.baseEpoch;
    }
    data.segments = orderSegments(data.segments);
    return data;
  }

  /**
   * Checks 2 and 3. With `full`, the decoding pass reads most objects, and only those it did not
   * reach (after damage, or in a queue whose chain is broken) are then read for their checksum:
   * each object is read once either way.
   */
  async checkData(queues: QueueData[]): Promise<void> {
    const segments = new Map<string, { ref: SegmentRef; queue: QueueData }>();
    for (const queue of queues) {
      // A fence range names no object: the prefix walk covers its offsets, there is nothing to read.
      for (const ref of queue.segments) if (!isFenceRange(ref) && !segments.has(ref.key)) segments.set(ref.key, { ref, queue });
    }
    this.progress.objectsTotal = segments.size;
    this.progress.bytesTotal = [...segments.values()].reduce((n, s) => n + s.ref.storedBytes, 0);
    this.sendProgress();
    if (this.options.full) {
      await this.forEachLimited(queues.filter((q) => q.chainIntact), (q) => this.decodeQueue(q));
    }
    const unread = [...segments.values()].filter((s) => !this.claimed.has(s.ref.key));
    await this.forEachLimited(unread, (s) => this.checkObject(s.ref, s.queue));
    this.sendProgress();
  }

  /** Check 2 for one object: present, and its size and sha256 what the manifest recorded. */
  private async checkObject(ref: SegmentRef, queue: QueueData): Promise<void> {
    this.claimed.add(ref.key);
    let bytes: Buffer;
    const where = `${queue.vhost}/${queue.queue}`;
    const damaged = (what: string) =>
      this.problem({ key: ref.key, vhost: queue.vhost, queue: queue.queue, message: `segment ${ref.key} of ${where} is corrupt: ${what}. ${this.segmentAdvice(ref, queue)}` });
    try {
      // Never more than the manifest records: a replaced or planted object is not read whole.
      bytes = await this.store.get(ref.key, ref.storedBytes > 0 ? { maxBytes: ref.storedBytes } : {});
    } catch (err) {
      if (err instanceof OversizedObjectError) {
        damaged(`it is larger in the store than the ${ref.storedBytes} bytes its manifest records (overwritten or planted)`);
        return;
      }
      if (!(err instanceof ObjectNotFoundError)) throw err;
      this.problem(this.missingSegment(ref, queue));
      return;
    } finally {
      this.advance(ref.storedBytes);
    }
    if (!isSealed(bytes)) this.plaintextSegments.add(ref.key);
    // Size first: a truncated object is the likelier damage, and says so more plainly than a hash.
    if (bytes.length !== ref.storedBytes) {
      damaged(`it is ${bytes.length} bytes in the store, but its manifest records ${ref.storedBytes} (truncated or overwritten)`);
    } else if (sha256Hex(bytes) !== ref.sha256.toLowerCase()) {
      damaged(`its sha256 is ${sha256Hex(bytes)}, but its manifest records ${ref.sha256}`);
    }
  }

  /**
   * Check 3 for one queue (which also does check 2 for every object it reads). verifyPrefix stops
   * at the first damage in a queue: the objects after it are left for checkObject.
   */
  private async decodeQueue(queue: QueueData): Promise<void> {
    const read: SegmentRef[] = [];
    const refs = new Map(queue.segments.map((ref) => [ref.key, ref]));
    const counting = observeGets(this.store, (key, bytes) => {
      if (bytes && !isSealed(bytes)) this.plaintextSegments.add(key);
      this.claimed.add(key);
      const ref = refs.get(key);
      if (ref) read.push(ref);
      this.advance(ref?.storedBytes ?? 0);
    });
    // From where the entry's kept history begins: retention may have let older records go.
    const kept = historyOf(queue.entry);
    const spec = { vhost: queue.vhost, queue: queue.queue, startOffset: kept.offset, cutOffset: queue.entry.cutOffset, segments: queue.segments };
    let damage: VerifyProblem | undefined;
    try {
      await verifyPrefix(counting, spec, { expectedMessages: queue.entry.messages - kept.messages, signal: this.options.signal });
    } catch (err) {
      if (this.options.signal?.aborted) throw err;
      damage = this.prefixDamage(err, queue);
    }
    // Every object verifyPrefix read was decoded whole, except the one it failed on.
    this.records += read.filter((ref) => ref.key !== damage?.key).reduce((n, ref) => n + ref.records, 0);
    if (damage) this.problem(damage);
  }

  /** What a verifyPrefix failure says about the data; rethrows a failure to read the store. */
  private prefixDamage(err: unknown, queue: QueueData): VerifyProblem {
    const where = `${queue.vhost}/${queue.queue}`;
    const ref = err instanceof CorruptDataError || err instanceof ObjectNotFoundError ? queue.segments.find((s) => s.key === err.key) : undefined;
    if (err instanceof ObjectNotFoundError && ref) return this.missingSegment(ref, queue);
    const problem = (key: string, advice: string): VerifyProblem => ({ key, vhost: queue.vhost, queue: queue.queue, message: `${errorMessage(err)}. ${advice}` });
    if (err instanceof IncompletePrefixError) {
      // A gap is not one object's fault: the manifests list too few segments.
      return problem('', `Checkpoint ${this.epoch} cannot restore ${where}: restore an older checkpoint of it whose cut offset is at most ${err.offset} (see "tidemark checkpoints show ID")`);
    }
    if (err instanceof CorruptDataError && ref) return problem(ref.key, this.segmentAdvice(ref, queue));
    if (err instanceof CorruptDataError) {
      return problem(err.key, `Checkpoint ${this.epoch} cannot restore ${where}: its manifest and its segments disagree. Restore another checkpoint of it (see "tidemark checkpoints list")`);
    }
    throw err;
  }

  private missingSegment(ref: SegmentRef, queue: QueueData): VerifyProblem {
    const where = `${queue.vhost}/${queue.queue}`;
    return {
      key: ref.key,
      vhost: queue.vhost,
      queue: queue.queue,
      message: `segment ${ref.key} of ${where} is missing from the store ${this.store.url}, so checkpoint ${this.epoch} cannot restore ${where}. ${this.segmentAdvice(ref, queue)}`,
    };
  }

  private segmentAdvice(ref: SegmentRef, queue: QueueData): string {
    const where = `${queue.vhost}/${queue.queue}`;
    const putBack = `Put an intact copy of ${ref.key} back into the store`;
    // A segment at the start of the prefix is needed by every checkpoint of the queue.
    if (ref.firstOffset <= queue.entry.startOffset) return `${putBack}: no checkpoint of ${where} up to this one can be restored without it`;
    return `${putBack}, or restore an older checkpoint of ${where} that does not need it: one whose cut offset for it is at most ${ref.firstOffset} (see "tidemark checkpoints show ID")`;
  }

  private advance(bytes: number): void {
    this.progress.objectsChecked += 1;
    this.progress.bytesChecked += bytes;
    if (Date.now() - this.progressSentAt >= PROGRESS_INTERVAL_MS) this.sendProgress();
  }

  private sendProgress(): void {
    this.progressSentAt = Date.now();
    this.options.emit({ event: { $case: 'progress', value: { ...this.progress } } });
  }

  /**
   * Runs `fn` over `items`, `concurrency` at a time. After a failure no new item starts, and it
   * waits for the running ones so that no event follows the rejection.
   */
  private async forEachLimited<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
    await forEachLimited(items, this.concurrency, async (item) => {
      this.options.signal?.throwIfAborted();
      await fn(item);
    });
  }

  done(durationMs: number): VerifyDone {
    return {
      checkpoint: this.epoch,
      full: this.options.full,
      manifests: this.reads.size,
      segments: this.progress.objectsTotal,
      bytes: this.progress.bytesChecked,
      records: this.records,
      problems: this.problems,
      durationMs,
      encrypted: this.manifests.encryptedSeen(this.epoch),
      plaintextManifests: this.plaintextManifests.size,
      plaintextSegments: this.plaintextSegments.size,
    };
  }
}

/**
 * `store` with each read reported to `onGet` when it ends, found or not: what verifyPrefix read
 * is what it checked, so those objects need no second read.
 */
function observeGets(store: ObjectStore, onGet: (key: string, bytes?: Buffer) => void): ObjectStore {
  return {
    url: store.url,
    vault: store.vault,
    get: (key, options) =>
      store.get(key, options).then(
        (bytes) => {
          onGet(key, bytes);
          return bytes;
        },
        (err: unknown) => {
          onGet(key);
          throw err;
        },
      ),
    put: (key, body) => store.put(key, body),
    has: (key) => store.has(key),
    list: (prefix) => store.list(prefix),
    listObjects: (prefix) => store.listObjects(prefix),
    delete: (key) => store.delete(key),
    close: () => store.close(),
  };
}
