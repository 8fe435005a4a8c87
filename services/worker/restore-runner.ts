/**
 * Runs a restore task on a worker: for each queue, verifies its checkpoint data, recreates it (and
 * its bindings) in the target broker if asked, then publishes its checkpoint prefix in journal
 * order on one confirm channel.
 *
 * Nothing partial is published for a queue whose data fails verification: a first pass reads
 * every segment of the queue's prefix and checks it (object present, sha256 equal to the
 * manifest's, decodes, offsets contiguous up to the cut, message count) and keeps nothing, so it
 * holds one segment in memory at a time. Only then is the target declared and the prefix
 * published, from a second read of the same segments that checks every sha256 again. A segment
 * that changed in the store between the two passes stops the queue where it is found, and the
 * error says how much of the prefix the target then holds. Each segment is read twice.
 *
 * Order is preserved because one queue's messages go through one channel, one at a time, to the
 * default exchange (which routes to exactly the target queue and nothing else). At most
 * `confirmWindow` messages are unconfirmed; a message is counted restored only once it and every
 * message before it are confirmed. `mandatory` makes an unroutable message (target queue gone)
 * come back as an error instead of vanishing.
 *
 * Resume: the longest confirmed prefix is written to Redis as it grows (restore-state.ts), and
 * publishing never runs more than `confirmWindow` messages ahead of what is written there. A
 * restore cut short by any crash therefore resumes with at most a window of duplicates in a queue
 * target (each carrying its origin headers); a stream target resumes from its own tail (the last
 * message's origin offset), with none.
 */
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import type { ExchangeDefinition, Record as JournalRecord } from '../gen/tidemark/v1/store.js';
import type { QueueRestore, RestoreProgress } from '../gen/tidemark/v1/worker.js';
import {
  errorMessage,
  failpoint,
  forEachLimited,
  fromFieldTable,
  ORIGIN_CHECKPOINT_HEADER,
  ORIGIN_OFFSET_HEADER,
  ORIGIN_QUEUE_HEADER,
  ORIGIN_RESTORE_HEADER,
  POSSIBLY_ACKED_HEADER,
  ORIGIN_VHOST_HEADER,
  queueKey,
  readPrefix,
  RestoreCancelledError,
  splitQueueKey,
  toPublishOptions,
} from '../core/index.js';
import { amqpSocketOptions, amqpUrlForVhost, probeQueue, queueDeclareOptions, redactUrl } from '../core/amqp/index.js';
import type { RestoreRunOptions } from './restore-run-options.js';
import { resumePoint, type ResumePoint } from './restore-resume.js';
import { changedSinceVerified, damagedData, prefixSpec, verifyQueueData, type Published } from './restore-verify.js';
import { RestoreTargetError } from './errors.js';

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
      connection = amqp.connect(url, amqpSocketOptions(url, { clientProperties: { connection_name: `tidemark restore ${task.restoreId}` } })).catch((err) => {
        // The broker closes the handshake when the vhost is missing or the user may not use it.
        const refused = /ConnectionOpenOk|NOT_ALLOWED|ACCESS_REFUSED/.test(errorMessage(err));
        const why = refused ? `vhost "${vhost}" does not exist there or the user may not use it (create it, or pick another --target-vhost)` : errorMessage(err);
        throw new RestoreTargetError(`cannot connect to target broker ${redactUrl(url)}: ${why}`, { cause: err });
      });
      connections.set(vhost, connection);
    }
    return connection;
  };
  try {
    await forEachLimited(task.queues, options.concurrency ?? 4, (item) => restoreQueue(item, options, connectionFor, baseUrl), options.signal);
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
    skipped: 0,
  };
  const published: Published = { lastOffset: item.resumeCount > 0 ? item.resumeAfterOffset : undefined };
  let publishing = false;
  try {
    // Verification first: a queue whose data is damaged fails here, before its target is even
    // declared, so the target never holds a partial prefix of it.
    await verifyQueueData(item, options);
    const connection = await connectionFor(item.targetVhost);
    // The coordinator checked the targets before the restore began; this catches one filled since.
    if (!item.append && !item.started) await refuseNonEmptyTarget(connection, item);
    await options.progress?.markStarted(queueKey(source.vhost, source.name));
    if (item.recreate) await declareTarget(connection, item, options.task.exchanges);
    const resume = await resumePoint(connection, item, options);
    progress.confirmed = progress.skipped = resume.count;
    progress.bodyBytes = resume.bodyBytes;
    published.lastOffset = resume.count > 0 ? resume.offset : undefined;
    // ─── PUBLISHING OF THIS QUEUE BEGINS HERE ───────────────────────────────────────────────
    // Everything above only read the store and declared the target; from here on the target
    // receives this queue's messages (the 'worker.mid-restore' failpoint fires half-way through).
    publishing = true;
    await publishPrefix(connection, item, options, progress, published, decodeURIComponent(new URL(baseUrl).username) || 'guest', resume);
    progress.done = true;
    options.emit({ ...progress });
  } catch (err) {
    progress.done = true;
    const damaged = publishing ? damagedData(err, item) : undefined;
    const why = damaged ? changedSinceVerified(damaged, item, options, progress, published) : errorMessage(err);
    progress.error = `restore of ${source.vhost}/${source.name} into ${item.targetVhost}/${item.targetName} failed after ${progress.confirmed} confirmed message(s): ${why}`;
    options.log.error('restore of a queue failed', {
      restoreId: options.task.restoreId,
      vhost: source.vhost,
      queue: source.name,
      targetVhost: item.targetVhost,
      targetQueue: item.targetName,
      confirmed: progress.confirmed,
      err: why,
    });
    options.emit({ ...progress });
  }
}

/**
 * A second restore into the same queue would silently duplicate every message: unless the
 * operator asked to append, a target that already holds messages is refused before publishing.
 */
async function refuseNonEmptyTarget(connection: ChannelModel, item: QueueRestore): Promise<void> {
  const { holdsMessages } = await probeQueue(connection, item.targetName, item.source?.type ?? 'classic');
  if (holdsMessages) {
    throw new RestoreTargetError(
      `target queue ${item.targetVhost}/${item.targetName} already holds messages; restoring into it would add duplicates. ` +
        'Nothing was published to it: restore under another name (--prefix/--map), delete or purge it, or pass --mode append',
    );
  }
}

/** Declares the target queue like the source (and, if asked, its exchanges and bindings). */
async function declareTarget(connection: ChannelModel, item: QueueRestore, exchanges: ExchangeDefinition[]): Promise<void> {
  const source = item.source!;
  // A failed declaration closes the channel, so each step gets a channel it may lose.
  const channel = await connection.createChannel();
  channel.on('error', () => {});
  try {
    await channel.assertQueue(item.targetName, queueDeclareOptions(source));
  } catch (err) {
    throw new RestoreTargetError(
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

async function publishPrefix(
  connection: ChannelModel,
  item: QueueRestore,
  options: RestoreRunOptions,
  progress: RestoreProgress,
  published: Published,
  user: string,
  resume: ResumePoint,
): Promise<void> {
  const channel: ConfirmChannel = await connection.createConfirmChannel();
  let failure: Error | undefined;
  channel.on('error', (err) => {
    failure ??= err;
  });
  channel.on('return', (msg) => {
    failure ??= new RestoreTargetError(`the broker returned a message as unroutable: target queue ${item.targetVhost}/${item.targetName} does not exist (replyText ${msg.fields.replyText ?? ''})`);
  });
  const window = Math.max(1, options.confirmWindow);
  const key = queueKey(item.source!.vhost, item.source!.name);
  let wake: (() => void) | undefined;
  const notify = () => wake?.();
  // Also wakes every 200 ms: a progress write that failed is retried from here.
  const waitUntil = async (done: () => boolean) => {
    while (!done() && !failure) {
      record(false);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 200);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    wake = undefined;
  };
  // Messages sent, in publish order, until they and all before them are confirmed.
  const unconfirmed: Array<{ offset: number; bodyBytes: number; acked: boolean }> = [];
  const confirmPrefix = () => {
    while (unconfirmed.length > 0 && unconfirmed[0].acked) {
      const first = unconfirmed.shift()!;
      progress.confirmed += 1;
      progress.bodyBytes += first.bodyBytes;
      published.lastOffset = first.offset;
    }
  };
  // The recorded prefix (restore-state.ts): publishing stays within a window of it.
  let recorded = resume.count;
  let recording: Promise<void> | undefined;
  let retryAt = 0;
  const record = (force: boolean) => {
    if (!options.progress || recording || published.lastOffset === undefined || Date.now() < retryAt) return;
    const count = progress.confirmed;
    if (count === recorded || (!force && count - recorded < Math.max(1, Math.floor(window / 4)))) return;
    recording = options.progress
      .advance(key, count, published.lastOffset)
      .then(() => void (recorded = count))
      .catch((err) => {
        retryAt = Date.now() + 1_000;
        options.log.warn('recording restore progress failed; will retry', { restoreId: options.task.restoreId, ...splitQueueKey(key), err: errorMessage(err) });
      })
      .finally(() => {
        recording = undefined;
        record(false);
        notify();
      });
  };
  const ahead = () => (options.progress ? resume.count + sent - recorded : unconfirmed.length);
  let lastEmit = 0;
  // A read failure (a segment changed since verification) is held until what was sent is
  // confirmed, so the error can say exactly how much of the prefix the target holds.
  let readFailure: unknown;
  const from = resume.count > 0 ? resume.offset + 1 : item.startOffset;
  const records = async function* () {
    try {
      yield* readPrefix(options.store, prefixSpec(item), from);
    } catch (err) {
      readFailure = err;
    }
  };
  const rate = item.rateLimit;
  const startedAt = Date.now();
  let sent = 0;
  try {
    for await (const record_ of records()) {
      if (failure) throw failure;
      if (options.signal.aborted) throw new RestoreCancelledError('restore cancelled');
      if (resume.count + sent === Math.floor(item.messages / 2) && sent > 0) await failpoint('worker.mid-restore');
      if (rate > 0) {
        const due = startedAt + (sent * 1000) / rate;
        if (due - Date.now() > 5) await new Promise((r) => setTimeout(r, due - Date.now()));
      }
      // The contents' first messages may have been acknowledged at the source before the cut.
      const possiblyAcked = resume.count + sent < item.possiblyAcked;
      sent += 1;
      const publishOptions = publishOptionsFor(record_, item, options, user, possiblyAcked);
      const entry = { offset: record_.offset, bodyBytes: record_.body.length, acked: false };
      unconfirmed.push(entry);
      const written = channel.publish('', item.targetName, record_.body, publishOptions, (err) => {
        if (err) failure ??= new RestoreTargetError(`the broker refused message at offset ${entry.offset} (nack)`);
        else {
          entry.acked = true;
          confirmPrefix();
          record(false);
        }
        notify();
      });
      if (!written) await new Promise<void>((resolve) => channel.once('drain', resolve));
      // At most `window` messages unconfirmed, and (when progress is recorded) unrecorded.
      await waitUntil(() => unconfirmed.length < window && ahead() < window);
      const now = Date.now();
      if (now - lastEmit >= 250) {
        lastEmit = now;
        options.emit({ ...progress });
      }
    }
    await waitUntil(() => unconfirmed.length === 0);
    await channel.waitForConfirms();
    record(true);
    await recording;
    record(true);
    await recording;
    if (readFailure !== undefined) throw readFailure;
    if (failure) throw failure;
    if (progress.confirmed !== item.messages) {
      throw new RestoreTargetError(`confirmed ${progress.confirmed} message(s) but the checkpoint holds ${item.messages}`);
    }
  } finally {
    await channel.close().catch(() => {});
  }
}

function publishOptionsFor(record: JournalRecord, item: QueueRestore, options: RestoreRunOptions, user: string, possiblyAcked: boolean) {
  const extra: Record<string, unknown> = {};
  if (possiblyAcked) extra[POSSIBLY_ACKED_HEADER] = true;
  if (options.task.originHeaders) {
    extra[ORIGIN_VHOST_HEADER] = item.source!.vhost;
    extra[ORIGIN_QUEUE_HEADER] = item.source!.name;
    extra[ORIGIN_OFFSET_HEADER] = record.offset;
    extra[ORIGIN_CHECKPOINT_HEADER] = options.task.checkpoint;
    extra[ORIGIN_RESTORE_HEADER] = options.task.restoreId;
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
