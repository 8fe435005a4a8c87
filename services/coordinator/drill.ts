/**
 * The building blocks of `tidemark restore-drill`: restore a checkpoint into a scratch vhost, read
 * every restored queue back, and reconcile it with the checkpoint data, queue by queue.
 *
 * Both sides are reduced to the same digest (docs/CLI.md, `tidemark restore-drill`): sha256 over,
 * for each message in queue order, its body length as 8 bytes big-endian followed by the body.
 * The length prefix makes the framing unambiguous, so moving bytes from one message to the next
 * changes the digest; a missing, extra, changed or reordered message changes it too.
 */
import { createHash, randomBytes } from 'node:crypto';
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import type { DrillQueueResult } from '../gen/tidemark/v1/admin.js';
import {
  ConfigError,
  DRILL_VHOST_PREFIX,
  errorMessage,
  FailedPreconditionError,
  isDrillVhost,
  ORIGIN_OFFSET_HEADER,
  type PrefixSpec,
  readPrefix,
  TidemarkError,
} from '../core/index.js';
import { amqpSocketOptions, amqpUrlForVhost, type ManagementClient, redactUrl } from '../core/amqp/index.js';
import type { ObjectStore } from '../core/store/index.js';
import { DrillSetupError } from './errors.js';

// The protection policy owns the prefix (it must never cover a drill); re-exported for callers.
export { DRILL_VHOST_PREFIX };

/** A fresh scratch vhost name for a drill of `checkpoint`: `tidemark-drill-<checkpoint>-<6 hex>`. */
export function scratchVhostName(checkpoint: number): string {
  if (!Number.isSafeInteger(checkpoint) || checkpoint < 0) {
    throw new ConfigError(`a checkpoint id is a non-negative integer, got ${checkpoint}`);
  }
  return `${DRILL_VHOST_PREFIX}${checkpoint}-${randomBytes(3).toString('hex')}`;
}

/**
 * Creates the scratch vhost and gives `user` (the user of the AMQP URL the restore publishes with)
 * full permissions on it. Refuses a name without the drill prefix, and a vhost that already
 * exists: a drill must start from an empty vhost, or stale messages would count as restored.
 */
export async function createScratchVhost(management: ManagementClient, name: string, user: string): Promise<void> {
  if (!isDrillVhost(name)) {
    throw new ConfigError(`scratch vhost "${name}" must start with ${DRILL_VHOST_PREFIX}; nothing was created`);
  }
  if ((await management.listVhosts()).includes(name)) {
    throw new FailedPreconditionError(
      `scratch vhost ${name} already exists; it was left alone. Delete it if it is left over from an earlier drill, then run the drill again`,
    );
  }
  await management.createVhost(name);
  try {
    await management.setPermissions(name, user, { configure: '.*', write: '.*', read: '.*' });
  } catch (err) {
    const removed = await removeScratchVhost(management, name);
    throw new DrillSetupError(
      `cannot give user "${user}" permissions on scratch vhost ${name}: ${errorMessage(err)}; ` +
        (removed ? 'the vhost was removed again' : `removing it failed too: delete vhost ${name} by hand`),
      { cause: err },
    );
  }
}

/**
 * Deletes the scratch vhost with everything in it. Never throws: false means it may still exist
 * and the caller should tell the user to delete it. A name without the drill prefix is never
 * deleted (false), so a bug elsewhere cannot take a real vhost with it.
 */
export async function removeScratchVhost(management: ManagementClient, name: string): Promise<boolean> {
  if (!isDrillVhost(name)) return false;
  for (let attempt = 1; ; attempt++) {
    try {
      await management.deleteVhost(name);
      return true;
    } catch (err) {
      const retryable = err instanceof TidemarkError && err.retryable;
      if (!retryable || attempt >= REMOVE_ATTEMPTS) return false;
      await new Promise((resolve) => setTimeout(resolve, 250 * attempt));
    }
  }
}

const REMOVE_ATTEMPTS = 3;

/** The drill digest of a sequence of message bodies (see the file comment). */
export class MessageDigest {
  private readonly hash = createHash('sha256');
  private count = 0;

  add(body: Buffer): void {
    const length = Buffer.alloc(8);
    length.writeBigUInt64BE(BigInt(body.length));
    this.hash.update(length);
    this.hash.update(body);
    this.count += 1;
  }

  get messages(): number {
    return this.count;
  }

  /** Lowercase hex of the digest so far; more bodies may be added afterwards. */
  hex(): string {
    return this.hash.copy().digest('hex');
  }
}

/**
 * The digest of what a restore of `spec` publishes: the prefix's data records, in offset order.
 * Throws what readPrefix throws for missing or damaged segments, and the signal's reason if aborted.
 */
export async function expectedDigest(
  store: ObjectStore,
  spec: PrefixSpec,
  signal?: AbortSignal,
): Promise<{ messages: number; sha256: string }> {
  signal?.throwIfAborted();
  const digest = new MessageDigest();
  for await (const record of readPrefix(store, spec)) {
    signal?.throwIfAborted();
    digest.add(record.body);
  }
  return { messages: digest.messages, sha256: digest.hex() };
}

/** Options of {@link restoredDigest}. */
export interface RestoredDigestOptions {
  /** Queue type: `classic`, `quorum` or `stream`. */
  type: string;
  /** Messages the checkpoint holds for the queue; reading stops after these plus `idleMs`. */
  expectedMessages: number;
  /** Stop after this long without a delivery (also the wait for extras after the last expected one). @default 500 */
  idleMs?: number;
  /** Aborting stops the read; the call then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** What {@link restoredDigest} read. */
export interface RestoredDigest {
  messages: number;
  sha256: string;
  /** False if some message's `x-tidemark-origin-offset` was not greater than the one before it. */
  originOrdered: boolean;
  /** Why the read was incomplete or the order could not be checked (no header); '' if neither. */
  error: string;
}

const DEFAULT_IDLE_MS = 500;
const PREFETCH = 500;
const CONNECT_TIMEOUT_MS = 10_000;
/** The overall limit is this plus {@link PER_MESSAGE_MS} per expected message. */
const BASE_TIMEOUT_MS = 30_000;
const PER_MESSAGE_MS = 2;

/**
 * Reads restored queue `queue` of scratch vhost `vhost` back and digests it. Classic and quorum
 * queues are consumed with acks, which empties them (the vhost is thrown away); a stream is read
 * from its first offset. Reading stops `idleMs` after the last delivery, so extras that follow
 * the expected messages are counted; a classic or quorum queue that still reports ready messages
 * is waited for. It never hangs: it gives up after 30 s plus 2 ms per expected message. A failed
 * or incomplete read is reported in `error` with what was read so far, not thrown.
 */
export async function restoredDigest(amqpUrl: string, vhost: string, queue: string, options: RestoredDigestOptions): Promise<RestoredDigest> {
  const { signal } = options;
  signal?.throwIfAborted();
  const reader = new QueueReader(options);
  const limitMs = BASE_TIMEOUT_MS + PER_MESSAGE_MS * Math.max(0, options.expectedMessages);
  const where = `${vhost}/${queue}`;
  let connection: ChannelModel | undefined;
  let error = '';
  try {
    const url = amqpUrlForVhost(amqpUrl, vhost);
    connection = await amqp
      .connect(url, amqpSocketOptions(url, { timeout: CONNECT_TIMEOUT_MS, clientProperties: { connection_name: `tidemark restore-drill ${vhost}` } }))
      .catch((err: unknown) => {
        throw new DrillSetupError(`cannot connect to ${redactUrl(url)}: ${errorMessage(err)}`, { cause: err });
      });
    connection.on('error', () => {}); // the close that follows is what the reader reacts to
    const channel = await connection.createChannel();
    error = await reader.read(channel, queue, limitMs);
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    error = errorMessage(err);
  } finally {
    await connection?.close().catch(() => {});
  }
  if (signal?.aborted) throw signal.reason;
  if (error === '' && reader.orderProblem !== '') error = reader.orderProblem;
  return {
    messages: reader.digest.messages,
    sha256: reader.digest.hex(),
    originOrdered: reader.ordered,
    error: error === '' ? '' : `reading ${where} back: ${error}`,
  };
}

/** One consumer's read of one queue: the digest, the order check and when to stop. */
class QueueReader {
  readonly digest = new MessageDigest();
  ordered = true;
  /** Why the order could not be checked, if it could not. */
  orderProblem = '';
  private lastOffset: bigint | undefined;
  private readonly idleMs: number;

  constructor(private readonly options: RestoredDigestOptions) {
    this.idleMs = options.idleMs ?? DEFAULT_IDLE_MS;
  }

  /** Consumes until idle, failure, timeout or abort; resolves with '' or what went wrong. */
  async read(channel: Channel, queue: string, limitMs: number): Promise<string> {
    const { signal, expectedMessages } = this.options;
    const stream = this.options.type === 'stream';
    let idle: NodeJS.Timeout | undefined;
    let finish: (error: string) => void = () => {};
    const finished = new Promise<string>((resolve) => (finish = resolve));
    let over = false;
    const stop = (error: string) => {
      if (over) return;
      over = true;
      clearTimeout(idle);
      clearTimeout(overall);
      signal?.removeEventListener('abort', onAbort);
      finish(error);
    };
    const onAbort = () => stop('aborted');
    const overall = setTimeout(
      () => stop(`gave up after ${limitMs} ms with ${this.digest.messages} of ${expectedMessages} expected message(s) read; the broker delivered too slowly`),
      limitMs,
    );
    signal?.addEventListener('abort', onAbort, { once: true });
    // The broker's reason (e.g. 404 NOT_FOUND for a missing queue) comes as 'error' before 'close'.
    channel.on('error', (err: unknown) => stop(errorMessage(err)));
    channel.once('close', () => stop(`the channel closed after ${this.digest.messages} message(s)`));

    const onIdle = async () => {
      if (over) return;
      if (this.digest.messages < expectedMessages && !stream) {
        // Short of the count, but the broker may only be slow: wait while it reports ready messages.
        try {
          if ((await channel.checkQueue(queue)).messageCount > 0) return armIdle();
        } catch (err) {
          return stop(`cannot check the queue: ${errorMessage(err)}`);
        }
      }
      stop('');
    };
    const armIdle = () => {
      clearTimeout(idle);
      if (!over) idle = setTimeout(() => void onIdle(), this.idleMs);
    };
    const onMessage = (msg: ConsumeMessage | null) => {
      if (over) return;
      if (msg === null) return stop(`the broker cancelled the consumer after ${this.digest.messages} message(s): was the queue deleted?`);
      this.take(msg);
      channel.ack(msg);
      armIdle();
    };

    try {
      // Streams need a prefetch and manual acks; the same credit keeps memory bounded for the others.
      await channel.prefetch(PREFETCH);
      await channel.consume(queue, onMessage, { noAck: false, ...(stream ? { arguments: { 'x-stream-offset': 'first' } } : {}) });
      armIdle();
    } catch (err) {
      stop(errorMessage(err));
    }
    return finished;
  }

  private take(msg: ConsumeMessage): void {
    this.digest.add(msg.content);
    const offset = originOffset(msg.properties.headers?.[ORIGIN_OFFSET_HEADER]);
    if (offset === undefined) {
      if (this.orderProblem === '') {
        this.orderProblem =
          `message ${this.digest.messages} has no ${ORIGIN_OFFSET_HEADER} header, so the order cannot be checked; ` +
          'a drill must restore with origin headers';
      }
      return;
    }
    if (this.lastOffset !== undefined && offset <= this.lastOffset) this.ordered = false;
    this.lastOffset = offset;
  }
}

/** The origin offset header as an integer, whichever way the broker typed it. */
function originOffset(value: unknown): bigint | undefined {
  if (value !== null && typeof value === 'object' && 'value' in value) value = (value as { value: unknown }).value;
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number' && Number.isInteger(value)) return BigInt(value);
  if (typeof value === 'string' && /^\d+$/.test(value)) return BigInt(value);
  return undefined;
}

/**
 * One queue's verdict: ok only when the read was complete, counts and digests are equal and the
 * origin offsets strictly increase. `error` says in words every way the copy differs.
 */
export function reconcile(
  vhost: string,
  queue: string,
  expected: { messages: number; sha256: string },
  restored: { messages: number; sha256: string; originOrdered: boolean; error: string },
): DrillQueueResult {
  const problems: string[] = [];
  if (restored.error !== '') problems.push(restored.error);
  const diff = restored.messages - expected.messages;
  if (diff !== 0) {
    const what = diff < 0 ? `${-diff} missing` : `${diff} extra`;
    problems.push(`counts differ by ${Math.abs(diff)} (${what}): the checkpoint holds ${expected.messages} message(s), the restored queue ${restored.messages}`);
  }
  if (restored.sha256 !== expected.sha256) {
    problems.push(
      diff === 0
        ? 'checksum differs: same count, but a body was changed or messages are in another order'
        : 'checksum differs',
    );
  }
  if (!restored.originOrdered) {
    problems.push(`order broken: ${ORIGIN_OFFSET_HEADER} does not strictly increase`);
  }
  return {
    vhost,
    queue,
    expectedMessages: expected.messages,
    restoredMessages: restored.messages,
    expectedSha256: expected.sha256,
    restoredSha256: restored.sha256,
    ok: problems.length === 0,
    error: problems.join('; '),
  };
}
