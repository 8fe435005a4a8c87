/**
 * Reading queues and journals back for assertions, over plain amqplib: what a user's consumer
 * would see.
 */
import amqp, { type ConsumeMessage, type MessageProperties } from 'amqplib';
import { amqpUrlForVhost } from '../../services/core/amqp/vhost-url.js';

export interface ReadMessage {
  offset?: number;
  body: Buffer;
  properties: MessageProperties;
  headers: Record<string, unknown>;
}

const OFFSET = 'x-stream-offset';

function toRead(msg: ConsumeMessage): ReadMessage {
  const headers = { ...(msg.properties.headers ?? {}) };
  const offset = headers[OFFSET] === undefined ? undefined : Number(headers[OFFSET]);
  delete headers[OFFSET];
  return { offset, body: msg.content, properties: msg.properties, headers };
}

/** The records of a stream with offset in [from, to), fences included, in offset order. */
export async function readStream(amqpUrl: string, vhost: string, stream: string, from: number, to: number, timeoutMs = 30_000): Promise<ReadMessage[]> {
  const connection = await amqp.connect(amqpUrlForVhost(amqpUrl, vhost));
  try {
    const channel = await connection.createChannel();
    await channel.prefetch(1000);
    const out: ReadMessage[] = [];
    if (to <= from) return out;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`read ${out.length} of ${to - from} records from ${vhost}/${stream} before timing out`)), timeoutMs);
      void channel
        .consume(
          stream,
          (msg) => {
            if (!msg) return;
            channel.ack(msg);
            const read = toRead(msg);
            if (read.offset! < from || read.offset! >= to) {
              if (read.offset! >= to) {
                clearTimeout(timer);
                resolve();
              }
              return;
            }
            out.push(read);
            if (read.offset === to - 1) {
              clearTimeout(timer);
              resolve();
            }
          },
          { noAck: false, arguments: { 'x-stream-offset': from } },
        )
        .catch(reject);
    });
    return out;
  } finally {
    await connection.close().catch(() => {});
  }
}

/**
 * Every message of a queue: a stream is read from its first offset, a classic or quorum queue is
 * consumed (and acknowledged) until it has been empty for a moment.
 */
export async function readQueue(amqpUrl: string, vhost: string, queue: string, type: string, expected: number, timeoutMs = 30_000): Promise<ReadMessage[]> {
  const connection = await amqp.connect(amqpUrlForVhost(amqpUrl, vhost));
  try {
    const channel = await connection.createChannel();
    await channel.prefetch(1000);
    const out: ReadMessage[] = [];
    await new Promise<void>((resolve, reject) => {
      let idle: NodeJS.Timeout | undefined;
      const finish = () => {
        clearTimeout(deadline);
        resolve();
      };
      const deadline = setTimeout(() => (out.length >= expected ? resolve() : reject(new Error(`read ${out.length} of ${expected} messages from ${vhost}/${queue}`))), timeoutMs);
      const arm = () => {
        clearTimeout(idle);
        // Wait a little past the expected count so extra (duplicate) messages are seen too.
        if (out.length >= expected) idle = setTimeout(finish, 500);
      };
      arm();
      void channel
        .consume(
          queue,
          (msg) => {
            if (!msg) return;
            channel.ack(msg);
            out.push(toRead(msg));
            arm();
          },
          { noAck: false, arguments: type === 'stream' ? { 'x-stream-offset': 'first' } : {} },
        )
        .catch(reject);
    });
    return out;
  } finally {
    await connection.close().catch(() => {});
  }
}

/** Headers Tidemark adds on restore; comparisons of content leave them out. */
export function withoutOrigin(headers: Record<string, unknown>): Record<string, unknown> {
  const copy = { ...headers };
  for (const key of Object.keys(copy)) if (key.startsWith('x-tidemark-origin-') || key === 'x-tidemark-checkpoint' || key === 'x-tidemark-restore' || key === 'x-tidemark-possibly-acked') delete copy[key];
  return copy;
}

/**
 * Declares durable queues of the given types in `vhost`, each bound to the direct exchange
 * `exchange` with its own name as routing key (so producers reach them through an exchange, and
 * journals see every message).
 */
export async function declareBoundQueues(amqpUrl: string, vhost: string, exchange: string, queues: ReadonlyArray<{ name: string; type: string }>): Promise<void> {
  const connection = await amqp.connect(amqpUrlForVhost(amqpUrl, vhost));
  try {
    const channel = await connection.createChannel();
    await channel.assertExchange(exchange, 'direct', { durable: true });
    for (const q of queues) {
      await channel.assertQueue(q.name, { durable: true, arguments: { 'x-queue-type': q.type } });
      await channel.bindQueue(q.name, exchange, q.name);
    }
  } finally {
    await connection.close().catch(() => {});
  }
}
