/**
 * The leader's fence channels: one confirm channel per vhost, kept open across rounds. A fence is
 * routed into every journal of its vhost, and the first publish on a new channel costs the broker
 * a set-up per stream (320-380 ms against 1,000 journals, where a later publish on the same
 * channel takes 20-30 ms: docs/SCALE.md), so opening a channel per round made every round pay it.
 *
 * A channel that closed (its connection dropped, or the broker closed it for an error) is
 * forgotten the moment it closes, and the next publish opens another; a fence is never sent on a
 * channel known to be closed.
 */
import type { Channel, ChannelModel, ConfirmChannel, Options } from 'amqplib';
import { errorMessage, type Logger } from '../core/index.js';

/** What a passive declare of a source queue said: its ready messages and its consumers. */
export interface DeclaredQueue {
  ready: number;
  consumers: number;
}

/**
 * The offsets a stream source retained when it was read: its first and last message. Read by
 * consuming, which a stream allows without changing it for anyone (G6): offsets are dense, so
 * `last - first + 1` bounds the messages it held from above.
 */
export interface StreamExtent {
  /** Messages between the first and the last offset read; 0 for an empty stream. */
  messages: number;
  first?: number;
  last?: number;
}

/** What a round needs of the fence channels. */
export interface FencePublisher {
  /** Resolves once the broker confirmed the message; rejects if it nacked it or the channel closed first. */
  publish(vhost: string, exchange: string, content: Buffer, options: Options.Publish): Promise<void>;
  /**
   * Passive declares of `names` in `vhost`, pipelined on one channel that is not the fence
   * channel (a failed declare closes its channel): each queue's counts, or why it could not be had.
   */
  declareQueues(vhost: string, names: string[]): Promise<Map<string, DeclaredQueue | Error>>;
  /** The extent of each stream source in `names` (a channel of its own per stream), or why it could not be read. */
  streamExtents(vhost: string, names: string[]): Promise<Map<string, StreamExtent | Error>>;
}

/** Channels a census may open for one vhost's declares (each failed declare costs one). */
const DECLARE_ATTEMPTS = 4;
/** How long an empty stream stays silent before the census takes it as empty. */
const STREAM_FIRST_WAIT_MS = 300;
/** The last chunk is read until no message came for this long... */
const STREAM_QUIET_MS = 300;
/** ...or for this long in all (a stream that never goes quiet is read this far and no further). */
const STREAM_READ_MS = 3_000;
/** Messages a stream census reads in flight (the last chunk is usually a handful). */
const STREAM_PREFETCH = 1_000;

export class FenceChannels implements FencePublisher {
  private readonly channels = new Map<string, Promise<ConfirmChannel>>();
  private readonly censusChannels = new Map<string, Promise<Channel>>();

  constructor(
    private readonly connect: (vhost: string) => Promise<ChannelModel>,
    private readonly log: Logger,
  ) {}

  async publish(vhost: string, exchange: string, content: Buffer, options: Options.Publish): Promise<void> {
    const channel = await this.channel(vhost);
    // Waits for this message's own confirm: waitForConfirms would also wait for the fences of
    // other rounds published on the same channel.
    await new Promise<void>((resolve, reject) => {
      try {
        channel.publish(exchange, '', content, options, (err) => (err ? reject(err) : resolve()));
      } catch (err) {
        // Closed between the lookup and the publish (amqplib throws "Channel closed").
        reject(err);
      }
    });
  }

  async declareQueues(vhost: string, names: string[]): Promise<Map<string, DeclaredQueue | Error>> {
    const result = new Map<string, DeclaredQueue | Error>();
    let pending = names;
    // A failed declare (a queue deleted meanwhile) closes the channel, and the declares pipelined
    // behind it fail with it: those are asked again on a new channel, a few times.
    for (let attempt = 0; pending.length > 0; attempt += 1) {
      let channel: Channel;
      try {
        channel = await this.censusChannel(vhost);
      } catch (err) {
        for (const name of pending) result.set(name, err instanceof Error ? err : new Error(String(err)));
        break;
      }
      const replies = await Promise.allSettled(pending.map((name) => channel.checkQueue(name)));
      const first = replies.findIndex((r) => r.status === 'rejected');
      replies.forEach((reply, i) => {
        if (reply.status === 'fulfilled') result.set(pending[i], { ready: reply.value.messageCount, consumers: reply.value.consumerCount });
        else if (i === first || attempt >= DECLARE_ATTEMPTS - 1) result.set(pending[i], new Error(errorMessage(reply.reason)));
      });
      pending = pending.filter((name) => !result.has(name));
    }
    return result;
  }

  async streamExtents(vhost: string, names: string[]): Promise<Map<string, StreamExtent | Error>> {
    const result = new Map<string, StreamExtent | Error>();
    if (names.length === 0) return result;
    let connection: ChannelModel;
    try {
      connection = await this.connect(vhost);
    } catch (err) {
      for (const name of names) result.set(name, err instanceof Error ? err : new Error(String(err)));
      return result;
    }
    await Promise.all(
      names.map(async (name) => {
        try {
          result.set(name, await readStreamExtent(connection, name));
        } catch (err) {
          result.set(name, new Error(errorMessage(err)));
        }
      }),
    );
    return result;
  }

  /** Closes every fence channel (the coordinator stops, or stops leading); later publishes open new ones. */
  async close(): Promise<void> {
    const open: Array<Promise<Channel>> = [...this.channels.values(), ...this.censusChannels.values()];
    this.channels.clear();
    this.censusChannels.clear();
    await Promise.all(
      open.map(async (opening) => {
        const channel = await opening.catch(() => undefined);
        await channel?.close().catch(() => {});
      }),
    );
  }

  private channel(vhost: string): Promise<ConfirmChannel> {
    return cachedPerVhost(this.channels, vhost, (forget) => this.open(vhost, forget));
  }

  private censusChannel(vhost: string): Promise<Channel> {
    return cachedPerVhost(this.censusChannels, vhost, async (forget) => {
      const channel = await (await this.connect(vhost)).createChannel();
      // A declare of a queue deleted meanwhile closes the channel (404): the next census opens another.
      channel.on('error', () => {});
      channel.on('close', forget);
      return channel;
    });
  }

  private async open(vhost: string, forget: () => void): Promise<ConfirmChannel> {
    const connection = await this.connect(vhost);
    const channel = await connection.createConfirmChannel();
    // 'close' follows every 'error'; unconfirmed fences are failed by amqplib when it comes.
    channel.on('error', (err: unknown) => this.log.warn('fence channel failed; the next round opens another', { vhost, err: errorMessage(err) }));
    channel.on('close', forget);
    return channel;
  }
}

/**
 * A stream's first offset (a consumer from `first`, one message) and an upper bound on its last
 * offset, both read after the round's marker, so the extent covers at least what the stream held
 * at it (docs/PROTOCOL.md, "The head at the cut"). A stream never empties itself (retention keeps
 * the segment being written), so one that answers `first` but not its tail is an error, not an
 * empty stream.
 */
async function readStreamExtent(connection: ChannelModel, name: string): Promise<StreamExtent> {
  const channel = await connection.createChannel();
  // A stream deleted meanwhile closes the channel (404): the consume below rejects with it.
  channel.on('error', () => {});
  try {
    const first = await readFirstOffset(channel, name);
    const last = await readLastOffset(channel, name, first === undefined ? STREAM_FIRST_WAIT_MS : STREAM_READ_MS);
    if (first === undefined && last === undefined) return { messages: 0 };
    if (first === undefined) throw new Error(`no message from the start of stream ${name} within ${STREAM_FIRST_WAIT_MS} ms, though it holds some`);
    if (last === undefined) throw new Error(`no message from the end of stream ${name} within ${STREAM_READ_MS} ms`);
    const top = Math.max(first, last);
    return { messages: top - first + 1, first, last: top };
  } finally {
    await channel.close().catch(() => {});
  }
}

/** The offset of the stream's first message, or undefined if none came within STREAM_FIRST_WAIT_MS. */
async function readFirstOffset(channel: Channel, name: string): Promise<number | undefined> {
  await channel.prefetch(1);
  let found: number | undefined;
  await consumeUntil(channel, name, 'first', (offset) => {
    // Messages already in flight still arrive until the cancel: only the first counts.
    found ??= offset;
    return true;
  }, (waitedMs) => waitedMs >= STREAM_FIRST_WAIT_MS);
  return found;
}

/**
 * An upper bound on the stream's last offset when this read began. Two consumers: one from `next`,
 * whose first message is the first written after it subscribed (so the one before was the last),
 * and one from `last`, which delivers the stream's last chunk. A stream being written ends the
 * read at the first message from `next`, a quiet one when `last` has gone quiet. Undefined if
 * nothing came within `waitMs`.
 */
async function readLastOffset(channel: Channel, name: string, waitMs: number): Promise<number | undefined> {
  await channel.prefetch(STREAM_PREFETCH);
  let top: number | undefined;
  let next: number | undefined;
  let lastAt: number | undefined;
  const startedAt = Date.now();
  const note = (offset: number) => {
    top = top === undefined ? offset : Math.max(top, offset);
    lastAt = Date.now();
  };
  const stop = () => {
    const now = Date.now();
    if (next !== undefined) return true;
    if (lastAt === undefined) return now - startedAt >= waitMs;
    return now - lastAt >= STREAM_QUIET_MS || now - startedAt >= STREAM_READ_MS;
  };
  await Promise.all([
    consumeUntil(channel, name, 'next', (offset) => {
      next ??= offset;
      return true;
    }, stop),
    consumeUntil(channel, name, 'last', (offset) => {
      note(offset);
      return next !== undefined;
    }, stop),
  ]);
  if (next !== undefined) return Math.max(next - 1, top ?? next - 1);
  return top;
}

/**
 * Consumes `name` from `from`, passing each message's `x-stream-offset` to `onOffset` (true ends
 * the read); `stop` is asked every 20 ms with the time waited. Cancels the consumer at the end.
 */
async function consumeUntil(
  channel: Channel,
  name: string,
  from: 'first' | 'last' | 'next',
  onOffset: (offset: number) => boolean,
  stop: (waitedMs: number) => boolean,
): Promise<void> {
  let done: () => void = () => {};
  const finished = new Promise<void>((resolve) => (done = resolve));
  const startedAt = Date.now();
  const { consumerTag } = await channel.consume(
    name,
    (msg) => {
      if (!msg) return done(); // cancelled by the broker (the stream was deleted)
      const offset = Number(msg.properties.headers?.['x-stream-offset']);
      channel.ack(msg);
      if (Number.isSafeInteger(offset) && onOffset(offset)) done();
    },
    { noAck: false, arguments: { 'x-stream-offset': from } },
  );
  const timer = setInterval(() => stop(Date.now() - startedAt) && done(), 20);
  try {
    await finished;
  } finally {
    clearInterval(timer);
    await channel.cancel(consumerTag).catch(() => {});
  }
}

/**
 * The channel `channels` holds for `vhost`, or a new one from `open`. `open` gets the function
 * that forgets the channel (call it when the channel closes); a failed open is forgotten too.
 */
function cachedPerVhost<T>(channels: Map<string, Promise<T>>, vhost: string, open: (forget: () => void) => Promise<T>): Promise<T> {
  const cached = channels.get(vhost);
  if (cached) return cached;
  const forget = () => {
    if (channels.get(vhost) === opening) channels.delete(vhost);
  };
  const opening = open(forget);
  channels.set(vhost, opening);
  opening.catch(forget);
  return opening;
}
