/**
 * Where a resumed restore continues a queue: after the prefix recorded as confirmed (a queue
 * target), or after the last message this restore put into a stream target (found by reading
 * the stream's tail, so nothing is published twice).
 */
import type { ChannelModel } from 'amqplib';
import type { QueueRestore } from '../gen/tidemark/v1/worker.js';
import { ORIGIN_OFFSET_HEADER, ORIGIN_QUEUE_HEADER, ORIGIN_RESTORE_HEADER, ORIGIN_VHOST_HEADER, readPrefix } from '../core/index.js';
import type { RestoreRunOptions } from './restore-run-options.js';
import { prefixSpec } from './restore-verify.js';
import { RestoreProgressError } from './errors.js';

/** Where publishing of a queue starts: after the messages an earlier run got into the target. */
export interface ResumePoint {
  /** Messages of the prefix already in the target. */
  count: number;
  /** Journal offset of the last of them (meaningless when count is 0). */
  offset: number;
  bodyBytes: number;
}

/**
 * A queue target can only be trusted as far as the recorded confirmed prefix. A stream target can
 * be read without consuming it: its last message's origin offset says exactly how far the earlier
 * run got, confirmed or not, so nothing is published twice.
 */
export async function resumePoint(connection: ChannelModel, item: QueueRestore, options: RestoreRunOptions): Promise<ResumePoint> {
  const recorded: ResumePoint = { count: item.resumeCount, offset: item.resumeCount > 0 ? item.resumeAfterOffset : -1, bodyBytes: 0 };
  const tail = item.resumeFromTail && item.started && options.task.originHeaders ? await streamTailOrigin(connection, item, options) : undefined;
  // Count what lies between the start (or the recorded point) and where the target ends.
  const until = tail !== undefined && tail > recorded.offset ? tail : recorded.offset;
  if (until < item.startOffset) return { count: 0, offset: -1, bodyBytes: 0 };
  let count = 0;
  let bodyBytes = 0;
  let offset = -1;
  for await (const record of readPrefix(options.store, prefixSpec(item))) {
    if (record.offset > until) break;
    count += 1;
    bodyBytes += record.body.length;
    offset = record.offset;
  }
  if (tail === undefined && count !== recorded.count) {
    throw new RestoreProgressError(
      `the recorded progress of ${item.source!.vhost}/${item.source!.name} (${recorded.count} message(s) up to offset ${recorded.offset}) does not match checkpoint ${options.task.checkpoint}'s data (${count}); nothing more was published`,
    );
  }
  return { count, offset, bodyBytes };
}

/**
 * The origin offset of a stream target's last message, if it came from this restore's checkpoint
 * and queue; undefined when the stream is empty or ends with something else.
 */
async function streamTailOrigin(connection: ChannelModel, item: QueueRestore, options: RestoreRunOptions): Promise<number | undefined> {
  const channel = await connection.createChannel();
  channel.on('error', () => {});
  try {
    await channel.prefetch(1000);
    let last: number | undefined;
    let lastAt = Date.now();
    let stop: () => void = () => {};
    const idle = new Promise<void>((resolve) => (stop = resolve));
    // 'last' starts at the stream's last chunk: a few messages, the final one among them.
    const { consumerTag } = await channel.consume(
      item.targetName,
      (msg) => {
        if (!msg) return stop();
        lastAt = Date.now();
        const headers = msg.properties.headers ?? {};
        // Only this restore's messages count: the stream may hold an earlier restore of the same data.
        const ours =
          headers[ORIGIN_RESTORE_HEADER] === options.task.restoreId &&
          headers[ORIGIN_QUEUE_HEADER] === item.source!.name &&
          headers[ORIGIN_VHOST_HEADER] === item.source!.vhost;
        last = ours ? Number(headers[ORIGIN_OFFSET_HEADER]) : undefined;
        channel.ack(msg);
      },
      { noAck: false, arguments: { 'x-stream-offset': 'last' } },
    );
    const timer = setInterval(() => Date.now() - lastAt >= 300 && stop(), 50);
    await idle;
    clearInterval(timer);
    await channel.cancel(consumerTag).catch(() => {});
    return last !== undefined && Number.isSafeInteger(last) ? last : undefined;
  } finally {
    await channel.close().catch(() => {});
  }
}
