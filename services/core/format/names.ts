/**
 * Names of the RabbitMQ objects and Redis keys Tidemark owns. Everything starts with the namespace
 * so that two installations (or two test runs) on one broker and one Redis never touch each
 * other's objects, and so protection globs can never select Tidemark's own queues.
 */
import { DIGEST_HEX_LENGTH, SHORT_DIGEST_HEX_LENGTH, endsLikeDigest, nameDigest, utf8Prefix } from './bounded-name.js';
import { NameError } from '../errors.js';

/** RabbitMQ queue names are limited to 255 bytes. */
export const MAX_QUEUE_NAME_BYTES = 255;
/** File names are limited to 255 bytes (ext4, xfs, overlayfs, ...). */
export const MAX_FILE_NAME_BYTES = 255;
/** Digits of the timestamp in a stream's directory name (see {@link streamDirectoryLength}). */
export const STREAM_TIMESTAMP_DIGITS = 19;

/** Header on fence messages carrying the epoch. */
export const FENCE_EPOCH_HEADER = 'x-tidemark-fence';
/** Header on fence messages carrying the round's unique id. */
export const FENCE_ROUND_HEADER = 'x-tidemark-round';
/**
 * Header on a round's marker, published on the fence exchange just before the fence, carrying the
 * round id. A marker carries FENCE_EPOCH_HEADER too, and as its FENCE_ROUND_HEADER the round id
 * with MARKER_ROUND_SUFFIX, so a worker that predates markers stores it as a fence of no round
 * it is asked about (never as data, never as the round's cut).
 */
export const MARKER_HEADER = 'x-tidemark-marker';
export const MARKER_ROUND_SUFFIX = '.marker';
/** Header a contents restore puts on messages that may have been acknowledged before the cut. */
export const POSSIBLY_ACKED_HEADER = 'x-tidemark-possibly-acked';
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

/**
 * The journal stream of a protected queue, in the queue's own vhost. The name must fit both as a
 * queue name (255 bytes) and in the stream's directory (see {@link streamDirectoryLength});
 * where `<namespace>.journal.<queue>` does not, a digest form takes its place (bounded-name.ts):
 *
 * - a queue name that made this readable form longer than 255 bytes has always had the journal
 *   `<namespace>.journal.~<sha256 of the queue name>`, and keeps it wherever that fits;
 * - otherwise `<namespace>.journal.<prefix>~<sha256>`, the prefix being as much of the queue name
 *   as fits (cut between characters), and the digest shortened to 32 hex digits in a vhost whose
 *   name leaves no room for 64.
 *
 * A readable name that fits maps exactly as it always has (unless it ends like a digest form).
 * Manifests keep the queue's real name beside its journal's. Throws NameError when the vhost's
 * name leaves no room for any journal.
 */
export function journalName(namespace: string, vhost: string, queue: string): string {
  const base = `${namespace}.journal.`;
  const readable = `${base}${queue}`;
  const readableBytes = Buffer.byteLength(readable);
  if (readableBytes <= MAX_QUEUE_NAME_BYTES && streamDirectoryLength(vhost, readable) <= MAX_FILE_NAME_BYTES && !endsLikeDigest(queue)) {
    return readable;
  }
  const budget = journalNameBudget(vhost);
  const baseBytes = Buffer.byteLength(base);
  const digest = nameDigest(queue);
  const hexLength = baseBytes + 1 + DIGEST_HEX_LENGTH <= budget ? DIGEST_HEX_LENGTH : SHORT_DIGEST_HEX_LENGTH;
  const room = budget - baseBytes - 1 - hexLength;
  if (room < 0) {
    throw new NameError(
      `queue ${JSON.stringify(queue)} of vhost ${JSON.stringify(vhost)} cannot get a journal: the vhost's name (${Buffer.byteLength(vhost)} bytes) ` +
        `leaves ${budget} bytes for a stream name, fewer than "${base}~" and a ${SHORT_DIGEST_HEX_LENGTH}-digit digest need; give the vhost a shorter name or a shorter TIDEMARK_NAMESPACE`,
    );
  }
  if (readableBytes > MAX_QUEUE_NAME_BYTES && hexLength === DIGEST_HEX_LENGTH) return `${base}~${digest}`;
  return `${base}${utf8Prefix(queue, room)}~${digest.slice(0, hexLength)}`;
}

/**
 * The length of the directory RabbitMQ 3.10 keeps a stream `name` of `vhost` in:
 * `<vhost>_<name>_<timestamp>`, where every byte outside `[A-Za-z0-9_=-]` becomes `_` except CR
 * and LF, which are left out, and the timestamp is the node's system time in nanoseconds (19
 * digits until the year 2286). It must fit a file name ({@link MAX_FILE_NAME_BYTES}): past that
 * the queue is declared but its stream never starts, and publishes routed to it are never confirmed.
 */
export function streamDirectoryLength(vhost: string, name: string): number {
  const kept = (s: string) => Buffer.byteLength(s) - (s.match(/[\r\n]/g)?.length ?? 0);
  return kept(vhost) + 1 + kept(name) + 1 + STREAM_TIMESTAMP_DIGITS;
}

/** Bytes any stream name of `vhost` may have so that its directory fits, counting every byte. */
export function journalNameBudget(vhost: string): number {
  return Math.min(MAX_QUEUE_NAME_BYTES, MAX_FILE_NAME_BYTES - Buffer.byteLength(vhost) - 2 - STREAM_TIMESTAMP_DIGITS);
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
    /**
     * Where clients reach the leader's admin API: `<token> <host:port>`, written by each new
     * leader; believed only while its token is the lease's (coordinator/leader-directory.ts).
     */
    leaderAddress: `${root}leader-address`,
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
    /** Hash of queue key → JSON record of a journal shed under disk pressure (shed-journals.ts). */
    shedJournals: `${root}shed-journals`,
  };
}
