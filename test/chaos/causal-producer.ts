/**
 * A causal producer that lives through broker restarts, for chaos runs. It publishes A_i to one
 * queue, waits for the broker's confirm, then publishes B_i to another, and writes every step
 * into a History. When the connection dies it reconnects with backoff and carries on with fresh
 * message ids: a message whose confirm never came is recorded as unknown (it may or may not be in
 * the queue), and a pair whose A is unknown gets no B.
 */
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { amqpUrlForVhost } from '../../services/core/amqp/vhost-url.js';
import type { History } from './history.js';

export interface ChaosProducerOptions {
  amqpUrl: string;
  vhost: string;
  /** Exchange to publish through (routing key = queue name), so journals see every message. */
  exchange: string;
  queueA: string;
  queueB: string;
  /** Prefix of this producer's message ids; ids are `<name>-<a|b>-<i>`. */
  name: string;
  history: History;
  /** Pause between pairs, to keep the history (and every restore) a manageable size. @default 20 */
  pauseMs?: number;
  /** A confirm that takes longer than this is given up on as unknown, and the connection dropped. @default 10000 */
  confirmTimeoutMs?: number;
}

export interface ChaosProducerStats {
  pairs: number;
  confirmed: number;
  unknown: number;
  reconnects: number;
  /** The last reason a connection was dropped. */
  lastError: string;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class ReconnectingCausalProducer {
  readonly stats: ChaosProducerStats = { pairs: 0, confirmed: 0, unknown: 0, reconnects: 0, lastError: '' };
  private stopped = false;
  private done: Promise<void> | undefined;
  private connection: ChannelModel | undefined;
  private channel: ConfirmChannel | undefined;
  private next = 0;

  constructor(private readonly options: ChaosProducerOptions) {}

  /** The connection_name its connections carry (the management API shows it). */
  get connectionName(): string {
    return `tidemark chaos producer ${this.options.name}`;
  }

  start(): void {
    this.done = this.run();
  }

  /** Stops after the message in flight is settled; resolves once the connection is closed. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }

  private async run(): Promise<void> {
    let backoff = 100;
    while (!this.stopped) {
      let channel: ConfirmChannel;
      try {
        channel = await this.open();
        backoff = 100;
      } catch (err) {
        this.stats.lastError = (err as Error).message;
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 2_000);
        continue;
      }
      const i = this.next++;
      const a = `${this.options.name}-a-${i}`;
      const b = `${this.options.name}-b-${i}`;
      if (!(await this.publish(channel, this.options.queueA, a, i))) continue;
      // B only ever follows a confirmed A: that is the causal dependency a cut must respect.
      this.options.history.causal({ queueA: this.options.queueA, a, queueB: this.options.queueB, b });
      if (!(await this.publish(channel, this.options.queueB, b, i))) continue;
      this.stats.pairs += 1;
      await sleep(this.options.pauseMs ?? 20);
    }
    await this.drop();
  }

  private async open(): Promise<ConfirmChannel> {
    if (this.channel) return this.channel;
    if (this.connection) await this.drop();
    const connection = await amqp.connect(amqpUrlForVhost(this.options.amqpUrl, this.options.vhost), {
      heartbeat: 5,
      clientProperties: { connection_name: this.connectionName },
    });
    connection.on('error', (err: Error) => (this.stats.lastError = err.message));
    connection.on('close', () => {
      if (this.connection === connection) {
        this.connection = undefined;
        this.channel = undefined;
      }
    });
    this.connection = connection;
    try {
      const channel = await connection.createConfirmChannel();
      channel.on('error', (err: Error) => (this.stats.lastError = err.message));
      channel.on('close', () => {
        if (this.channel === channel) this.channel = undefined;
      });
      this.channel = channel;
      if (this.next > 0) this.stats.reconnects += 1;
      return channel;
    } catch (err) {
      await this.drop();
      throw err;
    }
  }

  /** Publishes one message and waits for its confirm; false when its outcome is unknown. */
  private async publish(channel: ConfirmChannel, queue: string, id: string, i: number): Promise<boolean> {
    const { history } = this.options;
    history.attempt(queue, id, Date.now());
    const outcome = await new Promise<true | string>((resolve) => {
      const timer = setTimeout(() => resolve(`no confirm within ${this.options.confirmTimeoutMs ?? 10_000} ms`), this.options.confirmTimeoutMs ?? 10_000);
      try {
        channel.publish(this.options.exchange, queue, Buffer.from(`${id} ${'x'.repeat(i % 50)}`), { messageId: id, persistent: true, headers: { causal: i } }, (err) => {
          clearTimeout(timer);
          resolve(err ? (err as Error).message ?? String(err) : true);
        });
      } catch (err) {
        clearTimeout(timer);
        resolve((err as Error).message);
      }
    });
    if (outcome === true) {
      history.confirm(id, Date.now());
      this.stats.confirmed += 1;
      return true;
    }
    history.unknown(id);
    this.stats.unknown += 1;
    this.stats.lastError = outcome;
    await this.drop();
    return false;
  }

  private async drop(): Promise<void> {
    const connection = this.connection;
    this.connection = undefined;
    this.channel = undefined;
    await connection?.close().catch(() => {});
  }
}
