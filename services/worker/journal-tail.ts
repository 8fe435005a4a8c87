/**
 * The worker's lag probe: where a journal's tail is, read from the broker. A consumer from
 * `x-stream-offset: last` is delivered the journal's last chunk first, so the first delivery's
 * offset is at or below the tail's last record: `offset + 1` is a lower bound of the tail, exact
 * to one chunk (the records the broker wrote together). A stream allows this without changing it
 * for anyone (the journal is Tidemark's own; no source queue is touched, G6).
 */
import type { ChannelModel } from 'amqplib';
import { STREAM_OFFSET_HEADER } from '../core/index.js';

/** How long a probe waits for the last chunk: an empty journal delivers nothing. */
export const TAIL_PROBE_WAIT_MS = 500;

/**
 * The offset just past the first record of `journal`'s last chunk, or undefined when the journal
 * is empty, missing, or did not answer within `waitMs`. Uses a channel of its own, closed after:
 * a consume of a missing journal closes the channel it is made on.
 */
export async function probeJournalTail(connection: ChannelModel, journal: string, waitMs = TAIL_PROBE_WAIT_MS): Promise<number | undefined> {
  const channel = await connection.createChannel();
  channel.on('error', () => {}); // a missing journal: the probe answers undefined
  let timer: NodeJS.Timeout | undefined;
  try {
    await channel.prefetch(1);
    let found: (offset: number | undefined) => void = () => {};
    const first = new Promise<number | undefined>((resolve) => (found = resolve));
    timer = setTimeout(() => found(undefined), waitMs);
    await channel.consume(
      journal,
      (msg) => {
        const offset = Number(msg?.properties.headers?.[STREAM_OFFSET_HEADER]);
        found(Number.isSafeInteger(offset) && offset >= 0 ? offset + 1 : undefined);
      },
      { noAck: false, arguments: { 'x-stream-offset': 'last' } },
    );
    return await first;
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
    // Closing the channel cancels the consumer and drops the unacknowledged delivery.
    await channel.close().catch(() => {});
  }
}
