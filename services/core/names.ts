/**
 * Names of the RabbitMQ objects and Redis keys Tidemark owns. Everything starts with the namespace
 * so that two installations (or two test runs) on one broker and one Redis never touch each
 * other's objects, and so protection globs can never select Tidemark's own queues.
 */
import { createHash } from 'node:crypto';

/** RabbitMQ queue names are limited to 255 bytes. */
const MAX_QUEUE_NAME_BYTES = 255;

/** Header on fence messages carrying the epoch. */
export const FENCE_EPOCH_HEADER = 'x-tidemark-fence';
/** Header on fence messages carrying the round's unique id. */
export const FENCE_ROUND_HEADER = 'x-tidemark-round';
/** Header on fence messages carrying the namespace that published it. */
export const FENCE_NAMESPACE_HEADER = 'x-tidemark-namespace';
/** Header RabbitMQ adds to messages read from a stream. */
export const STREAM_OFFSET_HEADER = 'x-stream-offset';
/**
 * RabbitMQ gives a stream's non-message entries an offset too and never delivers them to AMQP
 * consumers: each segment file of a stream (one per 500 MB by default) opens with a tracking
 * snapshot, so a journal's delivered offsets skip one there. Capture accepts a hole of at most
 * this many offsets in the middle of a read, and readers accept it between two segments.
 */
export const MAX_UNDELIVERED_OFFSETS = 4;

/** Origin headers on restored messages, so consumers can de-duplicate. */
export const ORIGIN_QUEUE_HEADER = 'x-tidemark-origin-queue';
export const ORIGIN_VHOST_HEADER = 'x-tidemark-origin-vhost';
export const ORIGIN_OFFSET_HEADER = 'x-tidemark-origin-offset';
export const ORIGIN_CHECKPOINT_HEADER = 'x-tidemark-checkpoint';
/** The restore that published the message: a resumed restore finds where it stopped in a stream target by it. */
export const ORIGIN_RESTORE_HEADER = 'x-tidemark-restore';

/** The journal stream of a protected queue, in the queue's own vhost. */
export function journalName(namespace: string, queue: string): string {
  const name = `${namespace}.journal.${queue}`;
  if (Buffer.byteLength(name) <= MAX_QUEUE_NAME_BYTES) return name;
  // Too long to prefix: a digest keeps it unique and stable; the manifest keeps the real name.
  return `${namespace}.journal.~${createHash('sha256').update(queue).digest('hex')}`;
}

/** The fanout exchange of a vhost that fence messages are published to. */
export function fenceExchangeName(namespace: string): string {
  return `${namespace}.fence`;
}

/** True for queues and exchanges Tidemark itself created. */
export function isOwnObject(namespace: string, name: string): boolean {
  return name.startsWith(`${namespace}.`);
}

/** Redis keys, all under `<namespace>:`. */
export function redisKeys(namespace: string) {
  const root = `${namespace}:`;
  return {
    /** Epoch counter (INCR). */
    epoch: `${root}epoch`,
    /** Current leader lease: value is `<token>:<coordinator id>:<acquisition nonce>`. */
    leader: `${root}leader`,
    /** Fencing token counter for leaders. */
    leaderToken: `${root}leader-token`,
    /** Sorted set of worker ids scored by lease expiry (ms since epoch). */
    workers: `${root}workers`,
    /** Hash of worker id → JSON registration (address, started). */
    workerInfo: `${root}worker-info`,
    /** Hash of epoch → JSON decision record. */
    decisions: `${root}decisions`,
    /** A restore's record (JSON: request, plan size, state), see restore-state.ts. */
    restore: (id: string) => `${root}restore:${id}`,
    /** Hash of a restore's per-queue progress: `s:`/`c:`/`d:` + queue key (see restore-state.ts). */
    restoreQueues: (id: string) => `${root}restore:${id}:queues`,
    /** Sorted set of restore ids scored by creation time (ms). */
    restores: `${root}restores`,
    /** Per-queue publish rate (msgs/s) the last finished restore achieved: the dry run's estimate. */
    restoreRate: `${root}restore-rate`,
  };
}
