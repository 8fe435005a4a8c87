/**
 * One AMQP connection per vhost, reopened with backoff when the broker drops it. Users register
 * a callback that runs after every (re)connect to re-create their channels and consumers.
 */
import amqp, { type ChannelModel } from 'amqplib';
import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';
import { amqpUrlForVhost, redactUrl } from './vhost-url.js';

type OnConnect = (connection: ChannelModel) => Promise<void>;

interface Link {
  connection?: ChannelModel;
  connecting?: Promise<ChannelModel>;
  listeners: Set<OnConnect>;
  retryMs: number;
}

export class VhostConnections {
  private readonly links = new Map<string, Link>();
  private closed = false;

  constructor(
    private readonly baseUrl: string,
    private readonly log: Logger,
    private readonly clientName: string,
  ) {}

  /** Registers `onConnect` for the vhost and runs it now (and after every reconnect). */
  async watch(vhost: string, onConnect: OnConnect): Promise<() => void> {
    const link = this.link(vhost);
    link.listeners.add(onConnect);
    const connection = await this.connect(vhost);
    await onConnect(connection);
    return () => link.listeners.delete(onConnect);
  }

  /** The vhost's connection, opening it if needed. */
  connect(vhost: string): Promise<ChannelModel> {
    const link = this.link(vhost);
    if (link.connection) return Promise.resolve(link.connection);
    if (!link.connecting) {
      link.connecting = this.open(vhost, link).finally(() => {
        link.connecting = undefined;
      });
    }
    return link.connecting;
  }

  private link(vhost: string): Link {
    let link = this.links.get(vhost);
    if (!link) {
      link = { listeners: new Set(), retryMs: 250 };
      this.links.set(vhost, link);
    }
    return link;
  }

  private async open(vhost: string, link: Link): Promise<ChannelModel> {
    const url = amqpUrlForVhost(this.baseUrl, vhost);
    const connection = await amqp.connect(url, { clientProperties: { connection_name: `${this.clientName} ${vhost}` } });
    link.connection = connection;
    link.retryMs = 250;
    connection.on('error', (err) => this.log.warn(`connection to vhost ${vhost} failed: ${errorMessage(err)}`));
    connection.on('close', () => {
      link.connection = undefined;
      if (this.closed) return;
      this.log.warn(`connection to ${redactUrl(url)} closed; reconnecting`);
      this.reconnectLater(vhost, link);
    });
    return connection;
  }

  private reconnectLater(vhost: string, link: Link): void {
    const delay = link.retryMs;
    link.retryMs = Math.min(link.retryMs * 2, 5_000);
    setTimeout(async () => {
      if (this.closed || link.connection) return;
      try {
        const connection = await this.connect(vhost);
        for (const listener of link.listeners) await listener(connection);
      } catch (err) {
        this.log.warn(`reconnect to vhost ${vhost} failed: ${errorMessage(err)}`);
        if (!link.connection) this.reconnectLater(vhost, link);
      }
    }, delay).unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const link of this.links.values()) {
      await link.connection?.close().catch(() => {});
    }
    this.links.clear();
  }
}
