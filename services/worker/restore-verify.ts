/**
 * A restore's checks of checkpoint data: a queue's whole prefix is verified before any of it is
 * published, and damage found only while publishing (the store changed in between) is reported
 * with exactly how much of the prefix the target received.
 */
import type { QueueRestore, RestoreProgress } from '../gen/tidemark/v1/worker.js';
import { CorruptDataError, errorMessage, IncompletePrefixError, ObjectNotFoundError, type PrefixSpec, verifyPrefix } from '../core/index.js';
import type { RestoreRunOptions } from './restore-run-options.js';
import { RestoreReadError } from './errors.js';

/** What a queue's publishing has got confirmed so far. */
export interface Published {
  /** Journal offset of the last confirmed message; undefined before the first. */
  lastOffset: number | undefined;
}

export function prefixSpec(item: QueueRestore): PrefixSpec {
  return {
    vhost: item.source!.vhost,
    queue: item.source!.name,
    startOffset: item.startOffset,
    cutOffset: item.cutOffset,
    segments: item.segments,
  };
}

/**
 * The verification pass: reads and checks every segment of the queue's prefix, keeping none.
 * Throws an error that names the segment, the queue and the checkpoint, says that nothing was
 * published, and what to do.
 */
export async function verifyQueueData(item: QueueRestore, options: RestoreRunOptions): Promise<void> {
  const source = item.source!;
  const queue = `${source.vhost}/${source.name}`;
  const target = `${item.targetVhost}/${item.targetName}`;
  try {
    await verifyPrefix(options.store, prefixSpec(item), { expectedMessages: item.messages, signal: options.signal });
  } catch (err) {
    if (options.signal.aborted) throw err;
    const damaged = damagedData(err, item);
    if (!damaged) {
      throw new RestoreReadError(
        `cannot read the data of ${queue} in checkpoint ${options.task.checkpoint} from the store to verify it: ${errorMessage(err)}. ` +
          `Nothing was published to ${target}; restore it again once the store answers`,
        { cause: err },
      );
    }
    throw new CorruptDataError(
      `checkpoint ${options.task.checkpoint} of ${queue} failed verification: ${damaged.message}. ` +
        `Nothing was published to ${target}: a queue's data is verified before any of it is published. ${damaged.advice}`,
      damaged.key,
      { cause: err },
    );
  }
}

/** Checkpoint data that cannot be restored: what is wrong, and what to do about it. */
export interface DamagedData {
  message: string;
  /** The segment at fault, or '' when the damage is not one object. */
  key: string;
  advice: string;
}

/** A missing or corrupt segment, or a prefix the segments do not cover; undefined for any other failure. */
export function damagedData(err: unknown, item: QueueRestore): DamagedData | undefined {
  const queue = `${item.source!.vhost}/${item.source!.name}`;
  const another = (why: string) => `Restore another checkpoint of this queue instead (${why}; see "tidemark checkpoints list" and "tidemark checkpoints show ID")`;
  if (err instanceof IncompletePrefixError) {
    return { message: err.message, key: err.key, advice: another(`one whose cut offset for ${queue} is at most ${err.offset} does not need the missing offsets`) };
  }
  const broken = err instanceof ObjectNotFoundError ? `segment ${err.key} is missing from the store ${err.store}` : err instanceof CorruptDataError ? err.message : undefined;
  if (broken === undefined) return undefined;
  const key = (err as ObjectNotFoundError | CorruptDataError).key;
  const ref = item.segments.find((s) => s.key === key);
  if (!ref) return { message: broken, key, advice: another('an older one may not need the damaged data') };
  return {
    message: broken,
    key,
    advice: `${another(`one whose cut offset for ${queue} is at most ${ref.firstOffset} does not need ${ref.key}`)}, or put an intact copy of ${ref.key} back into the store and restore again`,
  };
}

/**
 * A segment that passed verification failed on the second read: the store changed meanwhile.
 * Publishing stopped at the damage, after waiting for the confirms of what was sent, so the
 * target holds exactly the prefix up to `published.lastOffset`.
 */
export function changedSinceVerified(damaged: DamagedData, item: QueueRestore, options: RestoreRunOptions, progress: RestoreProgress, published: Published): string {
  const target = `${item.targetVhost}/${item.targetName}`;
  const got =
    published.lastOffset === undefined
      ? `${target} received none of this queue's messages`
      : `${target} received the first ${progress.confirmed} of this queue's ${item.messages} message(s), up to journal offset ${published.lastOffset}, and nothing after`;
  return (
    `checkpoint ${options.task.checkpoint} of ${item.source!.vhost}/${item.source!.name} changed in the store while it was being restored: ${damaged.message}. ` +
    `It had passed verification; publishing stopped at the damage, and ${got}. ` +
    `Remove them before restoring again (delete or purge ${target}, or restore under another --prefix; consumers can also drop duplicates by their x-tidemark-origin-* headers). ${damaged.advice}`
  );
}
