/**
 * The firehose relay (see services/core/amqp/firehose.ts): in every vhost that has a firehose queue,
 * this worker consumes it and copies each traced publish into the journals it belongs in.
 *
 * Every worker holding queues of such a vhost consumes the queue; it is declared with single
 * active consumer, so the broker feeds exactly one of them and hands over to another when that
 * one goes away. Copies are published in delivery order on one confirm channel, and a trace
 * message is acknowledged only once its copy is confirmed, so nothing traced is lost: after a
 * failover the next relay starts with what was not acknowledged. Those copies may already be in
 * the journal; they carry RELAY_REDELIVERED_HEADER.
 */
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import {
  type Clock,
  errorMessage,
  firehoseQueueName,
  type Logger,
  parseTrace,
  relayConsumerTag,
  relayExchangeName,
  relayPublishOf,
  systemClock,
} from '../core/index.js';
import { queueExists, VhostConnections } from '../core/amqp/index.js';

export interface FirehoseRelayOptions {
  namespace: string;
  amqpUrl: string;
  log: Logger;
  clientName: string;
  /** This worker's id: its relay's consumer tag names it (relayConsumerTag), so status can show who relays. */
  workerId: string;
  /** Trace messages in flight (delivered, copy not yet confirmed). */
  window: number;
  /** When a vhost without a firehose queue is due to be looked at again. @default systemClock */
  clock?: Clock;
}

/** How often a vhost without a firehose queue is looked at again. */
const RECHECK_MS = 2_000;

interface VhostRelay {
  vhost: string;
  input?: Channel;
  output?: ConfirmChannel;
  /** When the firehose queue was last found missing. */
  checkedAtMs: number;
  starting?: Promise<void>;
  relayed: number;
}

export interface RelayStatus {
  vhost: string;
  consuming: boolean;
  relayed: number;
}

export class FirehoseRelay {
  private readonly connections: VhostConnections;
  private readonly relays = new Map<string, VhostRelay>();
  private closed = false;
  private readonly clock: Clock;

  constructor(private readonly options: FirehoseRelayOptions) {
    this.clock = options.clock ?? systemClock;
    this.connections = new VhostConnections(options.amqpUrl, options.log, `${options.clientName} relay`);
  }

  /** Starts relaying in each of `vhosts` that has a firehose queue (idempotent; cheap to repeat). */
  async watch(vhosts: Iterable<string>): Promise<void> {
    const now = this.clock.now();
    const starts: Promise<void>[] = [];
    for (const vhost of vhosts) {
      let relay = this.relays.get(vhost);
      if (!relay) {
        relay = { vhost, checkedAtMs: 0, relayed: 0 };
        this.relays.set(vhost, relay);
        await this.connections.watch(vhost, async (connection) => {
          // After a reconnect the old channels are gone: start over on the new connection.
          relay!.input = undefined;
          relay!.output = undefined;
          relay!.checkedAtMs = 0;
          await this.start(relay!, connection);
        });
        continue;
      }
      if (relay.input || relay.starting || now - relay.checkedAtMs < RECHECK_MS) continue;
      starts.push(this.connections.connect(vhost).then((connection) => this.start(relay!, connection)));
    }
    await Promise.all(starts);
  }

  status(): RelayStatus[] {
    return [...this.relays.values()].map((r) => ({ vhost: r.vhost, consuming: r.input !== undefined, relayed: r.relayed }));
  }

  private start(relay: VhostRelay, connection: ChannelModel): Promise<void> {
    if (this.closed || relay.input || relay.starting) return relay.starting ?? Promise.resolve();
    relay.starting = this.consume(relay, connection)
      .catch((err) => {
        this.options.log.warn('firehose relay could not start', { vhost: relay.vhost, err: errorMessage(err) });
        this.stop(relay);
      })
      .finally(() => {
        relay.starting = undefined;
      });
    return relay.starting;
  }

  private async consume(relay: VhostRelay, connection: ChannelModel): Promise<void> {
    const { namespace, log } = this.options;
    const queue = firehoseQueueName(namespace);
    if (!(await queueExists(connection, queue))) {
      relay.checkedAtMs = this.clock.now();
      return;
    }
    const input = await connection.createChannel();
    const output = await connection.createConfirmChannel();
    const lost = (which: string) => (err: unknown) => {
      log.warn('firehose relay channel closed', { vhost: relay.vhost, channel: which, err: errorMessage(err) });
      this.stop(relay);
    };
    input.on('error', lost('input'));
    output.on('error', lost('output'));
    relay.input = input;
    relay.output = output;
    await input.prefetch(this.options.window, false);
    const exchange = relayExchangeName(namespace);
    await input.consume(
      queue,
      (msg) => {
        if (msg === null) {
          log.info('firehose queue deleted: relay stopped', { vhost: relay.vhost });
          this.stop(relay);
          return;
        }
        this.relay(relay, input, output, exchange, msg);
      },
      { noAck: false, consumerTag: relayConsumerTag(this.options.workerId) },
    );
    log.info('relaying the firehose (active when the broker picks this consumer)', { vhost: relay.vhost });
  }

  private relay(relay: VhostRelay, input: Channel, output: ConfirmChannel, exchange: string, msg: ConsumeMessage): void {
    let publish;
    try {
      publish = relayPublishOf(this.options.namespace, relay.vhost, parseTrace(msg.properties.headers), msg.fields.redelivered);
    } catch (err) {
      // Only the tracer publishes into the firehose queue; anything else is not a publish to keep.
      this.options.log.warn('firehose relay skipped a message', { vhost: relay.vhost, err: errorMessage(err) });
      input.ack(msg);
      return;
    }
    if (!publish) {
      input.ack(msg);
      return;
    }
    try {
      output.publish(exchange, publish.routingKey, msg.content, publish.options, (err) => {
        if (relay.input !== input) return; // stopped: the trace message goes back to the queue
        if (err) {
          this.options.log.error('firehose relay: the broker refused a copy; restarting from the first unacknowledged trace', { vhost: relay.vhost, err: errorMessage(err) });
          this.stop(relay);
          return;
        }
        relay.relayed += 1;
        input.ack(msg);
      });
    } catch (err) {
      this.options.log.error('firehose relay: publish failed', { vhost: relay.vhost, err: errorMessage(err) });
      this.stop(relay);
    }
  }

  /**
   * Closes the vhost's relay channels: unacknowledged trace messages return to the queue, in
   * order, for whichever consumer is active next. The next watch() starts it again.
   */
  private stop(relay: VhostRelay): void {
    const { input, output } = relay;
    relay.input = undefined;
    relay.output = undefined;
    relay.checkedAtMs = this.clock.now();
    // Closing the input first returns its deliveries before any copy still unconfirmed could be
    // acknowledged on it.
    void input?.close().catch(() => {});
    void output?.close().catch(() => {});
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const relay of this.relays.values()) this.stop(relay);
    await this.connections.close();
  }
}
