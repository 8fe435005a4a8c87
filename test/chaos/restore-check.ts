/**
 * Restoring a checkpoint through the admin API and reading the restored queues back, without
 * judging: a chaos run hands what it read to the History, whose checker does the judging.
 */
import amqp from 'amqplib';
import type { RestoreRequest, TidemarkClient } from '../../services/client/index.js';
import { amqpUrlForVhost } from '../../services/core/amqp/vhost-url.js';

export interface RestoreOutcome {
  messages: number;
  queues: number;
  failedQueues: number;
  /** Per-queue errors the workers reported. */
  errors: string[];
}

/** Runs one restore to its end; throws if the stream breaks before its `done` event. */
export async function runRestore(client: TidemarkClient, request: Partial<RestoreRequest>): Promise<RestoreOutcome> {
  const errors: string[] = [];
  for await (const event of client.restore(request)) {
    if (event.event?.$case === 'progress' && event.event.value.error !== '') {
      errors.push(`${event.event.value.targetQueue}: ${event.event.value.error}`);
    }
    if (event.event?.$case === 'done') {
      const done = event.event.value;
      return { messages: done.messages, queues: done.queues, failedQueues: done.failedQueues, errors };
    }
  }
  throw new Error(`the restore stream ended without a done event${errors.length > 0 ? ` (${errors.join('; ')})` : ''}`);
}

/**
 * Consumes a queue and returns the message ids in delivery order (undefined for a message
 * without one). Reads until `expected` messages arrived and then nothing more for `idleMs`, or
 * until `timeoutMs` passes: it returns whatever it got, as the checker must see short restores
 * too. A stream is read from its first offset.
 */
export async function drainQueue(
  amqpUrl: string,
  vhost: string,
  queue: string,
  type: string,
  expected: number,
  options: { idleMs?: number; timeoutMs?: number; dataOnly?: boolean } = {},
): Promise<Array<string | undefined>> {
  const idleMs = options.idleMs ?? 500;
  const connection = await amqp.connect(amqpUrlForVhost(amqpUrl, vhost));
  try {
    const channel = await connection.createChannel();
    await channel.prefetch(1_000);
    const ids: Array<string | undefined> = [];
    await new Promise<void>((resolve, reject) => {
      let idle: NodeJS.Timeout | undefined;
      const deadline = setTimeout(finish, options.timeoutMs ?? 30_000);
      function finish() {
        clearTimeout(idle);
        clearTimeout(deadline);
        resolve();
      }
      const arm = () => {
        clearTimeout(idle);
        // Wait a little past the expected count, so extra (duplicate) messages are seen too.
        if (ids.length >= expected) idle = setTimeout(finish, idleMs);
      };
      arm();
      channel
        .consume(
          queue,
          (msg) => {
            if (!msg) return;
            channel.ack(msg);
            const id = typeof msg.properties.messageId === 'string' ? msg.properties.messageId : undefined;
            ids.push(id);
            // A journal gets a fence and a marker every round: with `dataOnly`, only messages with
            // an id keep the read going, or it would never go idle while rounds run.
            if (id !== undefined || !options.dataOnly) arm();
          },
          { noAck: false, arguments: type === 'stream' ? { 'x-stream-offset': 'first' } : {} },
        )
        .catch((err: unknown) => {
          clearTimeout(idle);
          clearTimeout(deadline);
          reject(err as Error);
        });
    });
    return ids;
  } finally {
    await connection.close().catch(() => {});
  }
}

/** Deletes queues (restored copies the run has read); missing ones are fine. */
export async function deleteQueues(amqpUrl: string, vhost: string, queues: string[]): Promise<void> {
  const connection = await amqp.connect(amqpUrlForVhost(amqpUrl, vhost));
  try {
    for (const queue of queues) {
      const channel = await connection.createChannel();
      channel.on('error', () => {});
      await channel.deleteQueue(queue).catch(() => {});
      await channel.close().catch(() => {});
    }
  } finally {
    await connection.close().catch(() => {});
  }
}
