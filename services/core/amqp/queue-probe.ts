/**
 * Looks at a queue without changing it: whether it exists, whether it holds messages, and
 * whether its arguments differ from the ones a restore would declare it with.
 *
 * Every look uses a throwaway channel: the broker closes a channel whose passive declare,
 * re-declare or consume fails, and the caller's channels must not go with it.
 */
import type { Channel, ChannelModel, Options } from 'amqplib';
import type { QueueDefinition } from '../../gen/tidemark/v1/store.js';
import { fromFieldTable } from '../format/field-table.js';
import { QueueProbeError, errorMessage } from '../errors.js';

/** What {@link probeQueue} found. */
export interface QueueProbe {
  exists: boolean;
  /**
   * The queue holds ready messages (for a stream: any message). Messages delivered to a consumer
   * and not yet acknowledged are not counted: the broker reports only ready ones.
   */
  holdsMessages: boolean;
}

/** How long an apparently empty stream gets to deliver its first message. */
const STREAM_FIRST_MESSAGE_WAIT_MS = 500;

/** Whether queue `name` exists on the connection's vhost; a failure other than "not found" throws. */
export async function queueExists(connection: ChannelModel, name: string): Promise<boolean> {
  return (await checkedQueue(connection, name)) !== undefined;
}

/** checkQueue on a throwaway channel: the queue's ready count, or undefined if it does not exist. */
async function checkedQueue(connection: ChannelModel, name: string): Promise<number | undefined> {
  const channel = await throwawayChannel(connection);
  try {
    return (await channel.checkQueue(name)).messageCount;
  } catch (err) {
    if (amqpCode(err) === 404) return undefined;
    throw new QueueProbeError(`cannot inspect queue "${name}": ${brokerText(err)}`, { cause: err });
  } finally {
    await channel.close().catch(() => {});
  }
}

/**
 * Whether queue `name` exists on the connection's vhost and holds messages. `type` is the type
 * the caller expects ("classic", "quorum", "stream"); a queue that reports no messages is also
 * checked for being a stream whatever `type` says, since a stream's count is always 0.
 */
export async function probeQueue(connection: ChannelModel, name: string, type: string): Promise<QueueProbe> {
  const messageCount = await checkedQueue(connection, name);
  if (messageCount === undefined) return { exists: false, holdsMessages: false };
  if (messageCount > 0) return { exists: true, holdsMessages: true };
  return { exists: true, holdsMessages: await streamHoldsMessages(connection, name, type) };
}

/**
 * Whether a stream holds a message. Reading a stream removes nothing, so a short-lived consumer
 * from its first offset tells; a stream with data delivers at once. The broker refuses the
 * x-stream-offset argument for classic and quorum queues, so for them the consume fails and
 * nothing can be delivered from them (a queue that is not a stream was counted by checkQueue).
 */
async function streamHoldsMessages(connection: ChannelModel, name: string, type: string): Promise<boolean> {
  const channel = await throwawayChannel(connection);
  try {
    await channel.prefetch(1);
    // amqplib calls back with null when the broker cancels the consumer: that is no message.
    let delivered!: () => void;
    const firstMessage = new Promise<void>((resolve) => (delivered = resolve));
    let consumerTag: string;
    try {
      const onMessage = (msg: unknown) => {
        if (msg) delivered();
      };
      ({ consumerTag } = await channel.consume(name, onMessage, { noAck: false, arguments: { 'x-stream-offset': 'first' } }));
    } catch (err) {
      if (type === 'stream' && amqpCode(err) !== 406) {
        throw new QueueProbeError(`cannot read stream "${name}" to see whether it holds messages: ${brokerText(err)}`, { cause: err });
      }
      return false; // not a stream: its message count was right
    }
    let timer: NodeJS.Timeout | undefined;
    const seen = await Promise.race([
      firstMessage.then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), STREAM_FIRST_MESSAGE_WAIT_MS))),
    ]);
    clearTimeout(timer);
    await channel.cancel(consumerTag).catch(() => {});
    return seen;
  } finally {
    await channel.close().catch(() => {});
  }
}

/**
 * For an EXISTING queue: re-declares it with `options` and returns the broker's
 * PRECONDITION_FAILED text when its durable, auto-delete, exclusive flags or arguments differ;
 * undefined when they are equal (the re-declare then changes nothing). Never call it for a queue
 * that may not exist: the declare would create it.
 */
export async function argumentsConflict(connection: ChannelModel, name: string, options: Options.AssertQueue): Promise<string | undefined> {
  const channel = await throwawayChannel(connection);
  try {
    await channel.assertQueue(name, options);
    return undefined;
  } catch (err) {
    if (amqpCode(err) === 406) return brokerText(err);
    throw new QueueProbeError(`cannot compare the arguments of queue "${name}": ${brokerText(err)}`, { cause: err });
  } finally {
    await channel.close().catch(() => {});
  }
}

/**
 * The options a restore declares a queue with, from its definition: the same type, flags and
 * arguments. Quorum queues and streams are always durable and never auto-delete (the broker
 * refuses anything else), whatever the definition says.
 */
export function queueDeclareOptions(definition: QueueDefinition): Options.AssertQueue {
  const args = fromFieldTable(definition.arguments);
  args['x-queue-type'] = definition.type || 'classic';
  const replicated = definition.type === 'quorum' || definition.type === 'stream';
  return { durable: replicated ? true : definition.durable, autoDelete: replicated ? false : definition.autoDelete, arguments: args };
}

async function throwawayChannel(connection: ChannelModel): Promise<Channel> {
  const channel = await connection.createChannel();
  // The failure is read from the rejected call; the channel's 'error' would otherwise crash.
  channel.on('error', () => {});
  return channel;
}

function amqpCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** The broker's own words from an amqplib error ("... with message "X""), else the whole message. */
function brokerText(err: unknown): string {
  const message = errorMessage(err);
  return /with message "(.*)"$/s.exec(message)?.[1] ?? message;
}
