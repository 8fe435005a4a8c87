/**
 * AMQP connections per vhost, each reopened with backoff when the broker drops it. A vhost has
 * numbered lanes: lane 0 is its one shared connection; a user that needs more channels than one
 * connection allows (RabbitMQ's channel_max, 2,047 by default) spreads them over lanes 1, 2, ...,
 * each its own connection that reconnects on its own. Users register a callback that runs after
 * every (re)connect of a lane to re-create that lane's channels and consumers.
 */
import amqp, { type ChannelModel } from 'amqplib';
import type { Logger } from '../infrastructure/log.js';
import { StoppingError, errorMessage } from '../errors.js';
import { amqpSocketOptions } from './amqp-tls.js';
import { amqpUrlForVhost, redactUrl } from './vhost-url.js';

/**
 * The longest a connect (TCP and the AMQP handshake) may go without an answer: RabbitMQ's own
 * handshake_timeout. A broker that accepts and never answers must not hold a connect, or the
 * stop of a service waiting on it, for ever.
 */
const CONNECT_TIMEOUT_MS = 10_000;

type OnConnect = (connection: ChannelModel) => Promise<void>;

interface Link {
  vhost: string;
  lane: number;
  connection?: ChannelModel;
  connecting?: Promise<ChannelModel>;
  listeners: Set<OnConnect>;
  retryMs: number;
}

export class VhostConnections {
  /** By vhost, then by lane. */
  private readonly links = new Map<string, Map<number, Link>>();
  private closed = false;

  constructor(
    private readonly baseUrl: string,
    private readonly log: Logger,
    private readonly clientName: string,
  ) {}

  /** Registers `onConnect` for the vhost's lane (lane 0 unless given) and runs it now (and after every reconnect). */
  async watch(vhost: string, onConnect: OnConnect, lane = 0): Promise<() => void> {
    const link = this.link(vhost, lane);
    link.listeners.add(onConnect);
    const connection = await this.connect(vhost, lane);
    await onConnect(connection);
    return () => link.listeners.delete(onConnect);
  }

  /** The connection of the vhost's lane (lane 0 unless given), opening it if needed. */
  connect(vhost: string, lane = 0): Promise<ChannelModel> {
    if (this.closed) return Promise.reject(new StoppingError(`connections to ${redactUrl(this.baseUrl)} are closed: not opening one to vhost ${vhost}`));
    const link = this.link(vhost, lane);
    if (link.connection) return Promise.resolve(link.connection);
    if (!link.connecting) {
      link.connecting = this.open(link).finally(() => {
        link.connecting = undefined;
      });
    }
    return link.connecting;
  }

  private link(vhost: string, lane: number): Link {
    let lanes = this.links.get(vhost);
    if (!lanes) {
      lanes = new Map();
      this.links.set(vhost, lanes);
    }
    let link = lanes.get(lane);
    if (!link) {
      link = { vhost, lane, listeners: new Set(), retryMs: 250 };
      lanes.set(lane, link);
    }
    return link;
  }

  /** `v` for lane 0 of vhost v, `v #2` for lane 2: how logs and connection names tell lanes apart. */
  private describe(link: Link): string {
    return link.lane === 0 ? link.vhost : `${link.vhost} #${link.lane}`;
  }

  private async open(link: Link): Promise<ChannelModel> {
    const url = amqpUrlForVhost(this.baseUrl, link.vhost);
    const connection = await amqp.connect(url, amqpSocketOptions(url, { timeout: CONNECT_TIMEOUT_MS, clientProperties: { connection_name: `${this.clientName} ${this.describe(link)}` } }));
    if (this.closed) {
      // close() ran while this connect was in flight: the connection would outlive the service.
      await connection.close().catch(() => {});
      throw new StoppingError(`connections to ${redactUrl(this.baseUrl)} were closed while vhost ${this.describe(link)} was connecting`);
    }
    link.connection = connection;
    link.retryMs = 250;
    connection.on('error', (err) => this.log.warn('broker connection failed', { vhost: link.vhost, lane: link.lane, err: errorMessage(err) }));
    connection.on('close', () => {
      link.connection = undefined;
      if (this.closed) return;
      this.log.warn('broker connection closed; reconnecting', { vhost: link.vhost, lane: link.lane, broker: redactUrl(url) });
      this.reconnectLater(link);
    });
    return connection;
  }

  private reconnectLater(link: Link): void {
    const delay = link.retryMs;
    link.retryMs = Math.min(link.retryMs * 2, 5_000);
    setTimeout(async () => {
      if (this.closed || link.connection) return;
      try {
        const connection = await this.connect(link.vhost, link.lane);
        for (const listener of link.listeners) await listener(connection);
      } catch (err) {
        this.log.warn('broker reconnect failed; retrying', { vhost: link.vhost, lane: link.lane, err: errorMessage(err), retryMs: link.retryMs });
        if (!link.connection) this.reconnectLater(link);
      }
    }, delay).unref();
  }

  /** Closes every connection; a connect still in flight closes its connection when it lands. */
  async close(): Promise<void> {
    this.closed = true;
    for (const lanes of this.links.values()) {
      for (const link of lanes.values()) {
        await link.connection?.close().catch(() => {});
      }
    }
    this.links.clear();
  }
}
