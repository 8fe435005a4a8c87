/**
 * The leader's fence channels: one confirm channel per vhost, kept open across rounds. A fence is
 * routed into every journal of its vhost, and the first publish on a new channel costs the broker
 * a set-up per stream (320-380 ms against 1,000 journals, where a later publish on the same
 * channel takes 20-30 ms: docs/SCALE.md), so opening a channel per round made every round pay it.
 *
 * A channel that closed (its connection dropped, or the broker closed it for an error) is
 * forgotten the moment it closes, and the next publish opens another; a fence is never sent on a
 * channel known to be closed.
 */
import type { ChannelModel, ConfirmChannel, Options } from 'amqplib';
import { errorMessage, type Logger } from '../core/index.js';

/** What a round needs of the fence channels. */
export interface FencePublisher {
  /** Resolves once the broker confirmed the message; rejects if it nacked it or the channel closed first. */
  publish(vhost: string, exchange: string, content: Buffer, options: Options.Publish): Promise<void>;
}

export class FenceChannels implements FencePublisher {
  private readonly channels = new Map<string, Promise<ConfirmChannel>>();

  constructor(
    private readonly connect: (vhost: string) => Promise<ChannelModel>,
    private readonly log: Logger,
  ) {}

  async publish(vhost: string, exchange: string, content: Buffer, options: Options.Publish): Promise<void> {
    const channel = await this.channel(vhost);
    // Waits for this message's own confirm: waitForConfirms would also wait for the fences of
    // other rounds published on the same channel.
    await new Promise<void>((resolve, reject) => {
      try {
        channel.publish(exchange, '', content, options, (err) => (err ? reject(err) : resolve()));
      } catch (err) {
        // Closed between the lookup and the publish (amqplib throws "Channel closed").
        reject(err);
      }
    });
  }

  /** Closes every fence channel (the coordinator stops, or stops leading); later publishes open new ones. */
  async close(): Promise<void> {
    const open = [...this.channels.values()];
    this.channels.clear();
    await Promise.all(
      open.map(async (opening) => {
        const channel = await opening.catch(() => undefined);
        await channel?.close().catch(() => {});
      }),
    );
  }

  private channel(vhost: string): Promise<ConfirmChannel> {
    const cached = this.channels.get(vhost);
    if (cached) return cached;
    const forget = () => {
      if (this.channels.get(vhost) === opening) this.channels.delete(vhost);
    };
    const opening = this.open(vhost, forget);
    this.channels.set(vhost, opening);
    opening.catch(forget);
    return opening;
  }

  private async open(vhost: string, forget: () => void): Promise<ConfirmChannel> {
    const connection = await this.connect(vhost);
    const channel = await connection.createConfirmChannel();
    // 'close' follows every 'error'; unconfirmed fences are failed by amqplib when it comes.
    channel.on('error', (err: unknown) => this.log.warn(`fence channel of vhost ${vhost} failed: ${errorMessage(err)}; the next round opens another`));
    channel.on('close', forget);
    return channel;
  }
}
