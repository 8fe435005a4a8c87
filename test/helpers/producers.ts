/**
 * Producers for integration tests and the demo: they publish through exchanges (so journals see
 * every message), wait for publisher confirms, and remember what the broker confirmed.
 */
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { randomBytes } from 'node:crypto';
import { amqpUrlForVhost } from '../../services/core/amqp/vhost-url.js';

export interface ConfirmedMessage {
  messageId: string;
  seq: number;
}

/** Publishes round-robin to queues (routing key = queue name) until stopped. */
export class RoundRobinProducer {
  /** Confirmed messages per queue, in publish order. */
  readonly confirmed = new Map<string, ConfirmedMessage[]>();
  private stopped = false;
  private done: Promise<void> | undefined;
  private connection: ChannelModel | undefined;

  constructor(
    private readonly amqpUrl: string,
    private readonly vhost: string,
    private readonly exchange: string,
    private readonly queues: string[],
    /** `pauseMs` between confirmed batches paces the producer (a steady, modest traffic). */
    private readonly options: { window?: number; maxMessages?: number; pauseMs?: number } = {},
  ) {
    for (const q of queues) this.confirmed.set(q, []);
  }

  start(): void {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    this.connection = await amqp.connect(amqpUrlForVhost(this.amqpUrl, this.vhost));
    const channel = await this.connection.createConfirmChannel();
    const window = this.options.window ?? 64;
    let seq = 0;
    while (!this.stopped && seq < (this.options.maxMessages ?? Infinity)) {
      const batch: Array<Promise<void>> = [];
      const published: Array<[string, ConfirmedMessage]> = [];
      for (let k = 0; k < window && seq < (this.options.maxMessages ?? Infinity); k += 1, seq += 1) {
        const queue = this.queues[seq % this.queues.length];
        batch.push(publishConfirmed(channel, this.exchange, queue, seq));
        published.push([queue, { messageId: `m-${seq}`, seq }]);
      }
      // The broker may confirm out of publish order (persistent messages wait for disk): record
      // the batch in publish order once all of it is confirmed.
      await Promise.all(batch);
      for (const [queue, message] of published) this.confirmed.get(queue)!.push(message);
      if (this.options.pauseMs) await new Promise((r) => setTimeout(r, this.options.pauseMs));
    }
    await this.connection.close();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }

  /** Waits until maxMessages have been published and confirmed. */
  async finished(): Promise<void> {
    await this.done;
  }

  total(): number {
    return [...this.confirmed.values()].reduce((n, list) => n + list.length, 0);
  }
}

function publishConfirmed(channel: ConfirmChannel, exchange: string, queue: string, seq: number): Promise<void> {
  // Varied bodies and properties, so restore is checked on more than one shape of message.
  const body = seq % 7 === 0 ? Buffer.alloc(0) : randomBytes(16 + (seq % 13) * 97);
  return new Promise((resolve, reject) => {
    channel.publish(
      exchange,
      queue,
      body,
      {
        messageId: `m-${seq}`,
        contentType: seq % 2 === 0 ? 'application/octet-stream' : 'text/plain',
        correlationId: `c-${seq % 5}`,
        persistent: seq % 3 !== 0,
        priority: seq % 4,
        timestamp: 1_700_000_000 + seq,
        appId: 'tidemark-test',
        headers: { seq, queue, flag: seq % 2 === 0, ratio: seq / 8, label: `héllo-${seq}` },
      },
      (err) => (err ? reject(err) : resolve()),
    );
  });
}

/**
 * The causal producer: publishes A_i to one queue, waits for the broker's confirm, then B_i to
 * another. In any consistent cut, a B_i is only present if its A_i is.
 */
export class CausalProducer {
  sent = 0;
  private stopped = false;
  private done: Promise<void> | undefined;

  constructor(
    private readonly amqpUrl: string,
    private readonly vhost: string,
    /** The exchange both are published to, or one per queue ('' is the default exchange). */
    private readonly exchange: string | readonly [string, string],
    private readonly queueA: string,
    private readonly queueB: string,
  ) {}

  start(): void {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    const connection = await amqp.connect(amqpUrlForVhost(this.amqpUrl, this.vhost));
    const channel = await connection.createConfirmChannel();
    for (let i = 0; !this.stopped; i += 1) {
      for (const [k, queue] of [this.queueA, this.queueB].entries()) {
        const exchange = typeof this.exchange === 'string' ? this.exchange : this.exchange[k];
        await new Promise<void>((resolve, reject) =>
          channel.publish(exchange, queue, Buffer.from(`${queue}:${i}`), { messageId: `${queue}-${i}`, headers: { causal: i } }, (err) =>
            err ? reject(err) : resolve(),
          ),
        );
      }
      this.sent = i + 1;
    }
    await connection.close();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}
