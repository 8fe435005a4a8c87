/** What a stream still holds, read from its first offset (retention checks). */
import amqp from 'amqplib';
import { STREAM_OFFSET_HEADER } from '../../services/core/format/names.js';
import { amqpUrlForVhost } from './services.js';

/** The first offset a stream still holds (-1 if none) and how many records it holds. */
export async function streamHolds(amqpUrl: string, vhost: string, queue: string): Promise<{ first: number; records: number }> {
  const connection = await amqp.connect(amqpUrlForVhost(amqpUrl, vhost));
  try {
    const channel = await connection.createChannel();
    await channel.prefetch(1_000);
    let first = -1;
    let records = 0;
    await new Promise<void>((resolve, reject) => {
      let idle = setTimeout(resolve, 3_000);
      channel
        .consume(
          queue,
          (msg) => {
            if (!msg) return;
            if (first < 0) first = Number(msg.properties.headers?.[STREAM_OFFSET_HEADER]);
            records += 1;
            channel.ack(msg);
            clearTimeout(idle);
            idle = setTimeout(resolve, 1_500);
          },
          { arguments: { 'x-stream-offset': 'first' } },
        )
        .catch(reject);
    });
    return { first, records };
  } finally {
    await connection.close();
  }
}
