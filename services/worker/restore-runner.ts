/**
 * Runs a restore task on a worker: for each queue, recreates it (and its bindings) in the target
 * broker if asked, then publishes its checkpoint prefix in journal order on one confirm channel.
 *
 * Order is preserved because one queue's messages go through one channel, one at a time, to the
 * default exchange (which routes to exactly the target queue and nothing else). At most
 * `confirmWindow` messages are unconfirmed; a message is counted restored only once confirmed.
 * `mandatory` makes an unroutable message (target queue gone) come back as an error instead of
 * vanishing.
 */
import amqp, { type Channel, type ChannelModel, type ConfirmChannel } from 'amqplib';
import type { ExchangeDefinition, QueueDefinition, Record as JournalRecord } from '../gen/tidemark/v1/store.js';
import type { QueueRestore, RestoreProgress, RestoreTask } from '../gen/tidemark/v1/worker.js';
import { fromFieldTable, toPublishOptions } from '../core/field-table.js';
import { readPrefix } from '../core/segment-reader.js';
import type { ObjectStore } from '../core/store/object-store.js';
import type { Logger } from '../core/log.js';
import { amqpUrlForVhost, redactUrl } from '../core/amqp/vhost-url.js';
import { TidemarkError, errorMessage } from '../core/errors.js';
import {
  ORIGIN_CHECKPOINT_HEADER,
  ORIGIN_OFFSET_HEADER,
  ORIGIN_QUEUE_HEADER,
  ORIGIN_VHOST_HEADER,
} from '../core/names.js';

export interface RestoreRunOptions {
  task: RestoreTask;
  store: ObjectStore;
  /** Broker used when the task names none. */
  defaultAmqpUrl: string;
  workerId: string;
  confirmWindow: number;
  log: Logger;
  emit: (progress: RestoreProgress) => void;
  signal: AbortSignal;
  /** Queues restored at the same time by this worker. @default 4 */
  concurrency?: number;
}

/** Header that keeps a message's user-id when the restoring user differs (the broker would refuse it). */
const ORIGINAL_USER_ID_HEADER = 'x-tidemark-original-user-id';
/** Sender-selected distribution headers RabbitMQ routes on. */
const SENDER_ROUTING_HEADERS = ['CC', 'BCC'];

export async function runRestoreTask(options: RestoreRunOptions): Promise<void> {
  const { task } = options;
  const baseUrl = task.targetAmqpUrl || options.defaultAmqpUrl;
  const connections = new Map<string, Promise<ChannelModel>>();
  const connectionFor = (vhost: string): Promise<ChannelModel> => {
    let connection = connections.get(vhost);
    if (!connection) {
      const url = amqpUrlForVhost(baseUrl, vhost);
      connection = amqp.connect(url, { clientProperties: { connection_name: `tidemark restore ${task.restoreId}` } }).catch((err) => {
        // The broker closes the handshake when the vhost is missing or the user may not use it.
        const refused = /ConnectionOpenOk|NOT_ALLOWED|ACCESS_REFUSED/.test(errorMessage(err));
        const why = refused ? `vhost "${vhost}" does not exist there or the user may not use it (create it, or pick another --target-vhost)` : errorMessage(err);
        throw new TidemarkError(`cannot connect to target broker ${redactUrl(url)}: ${why}`, { cause: err });
      });
      connections.set(vhost, connection);
    }
    return connection;
  };
  const queue = [...task.queues];
  const runNext = async (): Promise<void> => {
    for (let item = queue.shift(); item; item = queue.shift()) {
      if (options.signal.aborted) return;
      await restoreQueue(item, options, connectionFor, baseUrl);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(options.concurrency ?? 4, queue.length) }, runNext));
  } finally {
    for (const connection of connections.values()) {
      await connection.then((c) => c.close()).catch(() => {});
    }
  }
}

async function restoreQueue(
  item: QueueRestore,
  options: RestoreRunOptions,
  connectionFor: (vhost: string) => Promise<ChannelModel>,
  baseUrl: string,
): Promise<void> {
  const source = item.source!;
  const progress: RestoreProgress = {
    workerId: options.workerId,
    sourceVhost: source.vhost,
    sourceQueue: source.name,
    targetVhost: item.targetVhost,
    targetQueue: item.targetName,
    confirmed: 0,
    total: item.messages,
    done: false,
    error: '',
    bodyBytes: 0,
  };
  try {
    const connection = await connectionFor(item.targetVhost);
    if (!item.append) await refuseNonEmptyTarget(connection, item);
    if (item.recreate) await declareTarget(connection, item, options.task.exchanges);
    await publishPrefix(connection, item, options, progress, decodeURIComponent(new URL(baseUrl).username) || 'guest');
    progress.done = true;
    options.emit({ ...progress });
  } catch (err) {
    progress.done = true;
    progress.error = `restore of ${source.vhost}/${source.name} into ${item.targetVhost}/${item.targetName} failed after ${progress.confirmed} confirmed message(s): ${errorMessage(err)}`;
    options.log.error(progress.error);
    options.emit({ ...progress });
  }
}

/**
 * A second restore into the same queue would silently duplicate every message: unless the
 * operator asked to append, a target that already holds messages is refused before publishing.
 */
async function refuseNonEmptyTarget(connection: ChannelModel, item: QueueRestore): Promise<void> {
  const probe = await connection.createChannel();
  probe.on('error', () => {});
  try {
    let messageCount: number;
    try {
      ({ messageCount } = await probe.checkQueue(item.targetName));
    } catch {
      return; // it does not exist yet
    }
    // A stream reports no message count: look for a first message instead.
    const holds = messageCount > 0 || (item.source?.type === 'stream' && (await streamHoldsMessages(probe, item.targetName)));
    if (holds) {
      throw new TidemarkError(
        `target queue ${item.targetVhost}/${item.targetName} already holds messages; restoring into it would add duplicates. ` +
          'Nothing was published to it: restore under another name (--prefix/--map), delete or purge it, or pass --append',
      );
    }
  } finally {
    await probe.close().catch(() => {});
  }
}

/** Reading a stream removes nothing, so a short-lived consumer can tell whether it is empty. */
async function streamHoldsMessages(channel: Channel, queue: string): Promise<boolean> {
  await channel.prefetch(1);
  let seen = false;
  const { consumerTag } = await channel
    .consume(queue, () => void (seen = true), { noAck: false, arguments: { 'x-stream-offset': 'first' } })
    .catch(() => ({ consumerTag: '' })); // not a stream: the count above was right
  if (!consumerTag) return false;
  // A stream with data delivers its first message at once; give the broker a moment.
  for (let i = 0; i < 10 && !seen; i += 1) await new Promise((r) => setTimeout(r, 50));
  await channel.cancel(consumerTag).catch(() => {});
  return seen;
}

/** Declares the target queue like the source (and, if asked, its exchanges and bindings). */
async function declareTarget(connection: ChannelModel, item: QueueRestore, exchanges: ExchangeDefinition[]): Promise<void> {
  const source = item.source!;
  // A failed declaration closes the channel, so each step gets a channel it may lose.
  const channel = await connection.createChannel();
  channel.on('error', () => {});
  try {
    await channel.assertQueue(item.targetName, queueOptions(source));
  } catch (err) {
    throw new TidemarkError(
      `cannot declare target queue ${item.targetVhost}/${item.targetName} as ${source.type}: ${errorMessage(err)}. ` +
        'If it exists with other arguments, restore under another name (--prefix/--map) or delete it first; nothing was published to it',
      { cause: err },
    );
  }
  if (item.bind) {
    for (const binding of source.bindings) {
      const exchange = exchanges.find((e) => e.vhost === source.vhost && e.name === binding.source);
      // amq.* exchanges exist on every broker and may not be declared by clients.
      if (exchange && !exchange.name.startsWith('amq.')) {
        await channel.assertExchange(exchange.name, exchange.type, {
          durable: exchange.durable,
          autoDelete: exchange.autoDelete,
          internal: exchange.internal,
          arguments: fromFieldTable(exchange.arguments),
        });
      }
      await channel.bindQueue(item.targetName, binding.source, binding.routingKey, fromFieldTable(binding.arguments));
    }
  }
  await channel.close().catch(() => {});
}

function queueOptions(definition: QueueDefinition) {
  const args = fromFieldTable(definition.arguments);
  args['x-queue-type'] = definition.type || 'classic';
  // Quorum queues and streams must be durable and cannot auto-delete.
  const replicated = definition.type === 'quorum' || definition.type === 'stream';
  return { durable: replicated ? true : definition.durable, autoDelete: replicated ? false : definition.autoDelete, arguments: args };
}

async function publishPrefix(
  connection: ChannelModel,
  item: QueueRestore,
  options: RestoreRunOptions,
  progress: RestoreProgress,
  user: string,
): Promise<void> {
  const source = item.source!;
  const channel: ConfirmChannel = await connection.createConfirmChannel();
  let failure: Error | undefined;
  channel.on('error', (err) => {
    failure ??= err;
  });
  channel.on('return', (msg) => {
    failure ??= new TidemarkError(`the broker returned a message as unroutable: target queue ${item.targetVhost}/${item.targetName} does not exist (replyText ${msg.fields.replyText ?? ''})`);
  });
  const window = Math.max(1, options.confirmWindow);
  let inFlight = 0;
  let wake: (() => void) | undefined;
  let lastEmit = 0;
  const settled = () => {
    inFlight -= 1;
    wake?.();
  };
  const waitBelow = async (limit: number) => {
    while (inFlight > limit && !failure) await new Promise<void>((resolve) => (wake = resolve));
    wake = undefined;
  };
  try {
    for await (const record of readPrefix(options.store, {
      vhost: source.vhost,
      queue: source.name,
      startOffset: item.startOffset,
      cutOffset: item.cutOffset,
      segments: item.segments,
    })) {
      if (failure) throw failure;
      if (options.signal.aborted) throw new TidemarkError('restore cancelled');
      const publishOptions = publishOptionsFor(record, item, options, user);
      inFlight += 1;
      const bodyBytes = record.body.length;
      const written = channel.publish('', item.targetName, record.body, publishOptions, (err) => {
        if (err) failure ??= new TidemarkError(`the broker refused message at offset ${record.offset} (nack)`);
        else {
          progress.confirmed += 1;
          progress.bodyBytes += bodyBytes;
        }
        settled();
      });
      if (!written) await new Promise<void>((resolve) => channel.once('drain', resolve));
      await waitBelow(window - 1);
      const now = Date.now();
      if (now - lastEmit >= 250) {
        lastEmit = now;
        options.emit({ ...progress });
      }
    }
    await waitBelow(0);
    await channel.waitForConfirms();
    if (failure) throw failure;
    if (progress.confirmed !== item.messages) {
      throw new TidemarkError(`confirmed ${progress.confirmed} message(s) but the checkpoint holds ${item.messages}`);
    }
  } finally {
    await channel.close().catch(() => {});
  }
}

function publishOptionsFor(record: JournalRecord, item: QueueRestore, options: RestoreRunOptions, user: string) {
  const extra: Record<string, unknown> = {};
  if (options.task.originHeaders) {
    extra[ORIGIN_VHOST_HEADER] = item.source!.vhost;
    extra[ORIGIN_QUEUE_HEADER] = item.source!.name;
    extra[ORIGIN_OFFSET_HEADER] = record.offset;
    extra[ORIGIN_CHECKPOINT_HEADER] = options.task.checkpoint;
  }
  const properties = record.properties ?? { headers: undefined };
  // The broker refuses a user-id other than the connection's: keep it in a header instead.
  const foreignUser = properties.userId !== undefined && properties.userId !== user;
  if (foreignUser) extra[ORIGINAL_USER_ID_HEADER] = properties.userId;
  // CC/BCC would make the broker route extra copies into other queues: keep them inert.
  const stored = fromFieldTable(properties.headers);
  for (const name of SENDER_ROUTING_HEADERS) {
    if (stored[name] !== undefined) extra[`x-tidemark-original-${name.toLowerCase()}`] = stored[name];
  }
  const publish = toPublishOptions(properties, extra, { dropHeaders: SENDER_ROUTING_HEADERS, omitUserId: foreignUser });
  return { ...publish, mandatory: true };
}
