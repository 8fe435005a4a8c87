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
import type { Channel, ChannelModel, ConfirmChannel, Options } from 'amqplib';
import { errorMessage, type Logger } from '../core/index.js';

/** What a passive declare of a source queue said: its ready messages and its consumers. */
export interface DeclaredQueue {
  ready: number;
  consumers: number;
}

/** What a round needs of the fence channels. */
export interface FencePublisher {
  /** Resolves once the broker confirmed the message; rejects if it nacked it or the channel closed first. */
  publish(vhost: string, exchange: string, content: Buffer, options: Options.Publish): Promise<void>;
  /**
   * Passive declares of `names` in `vhost`, pipelined on one channel that is not the fence
   * channel (a failed declare closes its channel): each queue's counts, or why it could not be had.
   */
  declareQueues(vhost: string, names: string[]): Promise<Map<string, DeclaredQueue | Error>>;
}

/** Channels a census may open for one vhost's declares (each failed declare costs one). */
const DECLARE_ATTEMPTS = 4;

export class FenceChannels implements FencePublisher {
  private readonly channels = new Map<string, Promise<ConfirmChannel>>();
  private readonly censusChannels = new Map<string, Promise<Channel>>();

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

  async declareQueues(vhost: string, names: string[]): Promise<Map<string, DeclaredQueue | Error>> {
    const result = new Map<string, DeclaredQueue | Error>();
    let pending = names;
    // A failed declare (a queue deleted meanwhile) closes the channel, and the declares pipelined
    // behind it fail with it: those are asked again on a new channel, a few times.
    for (let attempt = 0; pending.length > 0; attempt += 1) {
      let channel: Channel;
      try {
        channel = await this.censusChannel(vhost);
      } catch (err) {
        for (const name of pending) result.set(name, err instanceof Error ? err : new Error(String(err)));
        break;
      }
      const replies = await Promise.allSettled(pending.map((name) => channel.checkQueue(name)));
      const first = replies.findIndex((r) => r.status === 'rejected');
      replies.forEach((reply, i) => {
        if (reply.status === 'fulfilled') result.set(pending[i], { ready: reply.value.messageCount, consumers: reply.value.consumerCount });
        else if (i === first || attempt >= DECLARE_ATTEMPTS - 1) result.set(pending[i], new Error(errorMessage(reply.reason)));
      });
      pending = pending.filter((name) => !result.has(name));
    }
    return result;
  }

  /** Closes every fence channel (the coordinator stops, or stops leading); later publishes open new ones. */
  async close(): Promise<void> {
    const open: Array<Promise<Channel>> = [...this.channels.values(), ...this.censusChannels.values()];
    this.channels.clear();
    this.censusChannels.clear();
    await Promise.all(
      open.map(async (opening) => {
        const channel = await opening.catch(() => undefined);
        await channel?.close().catch(() => {});
      }),
    );
  }

  private channel(vhost: string): Promise<ConfirmChannel> {
    return cachedPerVhost(this.channels, vhost, (forget) => this.open(vhost, forget));
  }

  private censusChannel(vhost: string): Promise<Channel> {
    return cachedPerVhost(this.censusChannels, vhost, async (forget) => {
      const channel = await (await this.connect(vhost)).createChannel();
      // A declare of a queue deleted meanwhile closes the channel (404): the next census opens another.
      channel.on('error', () => {});
      channel.on('close', forget);
      return channel;
    });
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

/**
 * The channel `channels` holds for `vhost`, or a new one from `open`. `open` gets the function
 * that forgets the channel (call it when the channel closes); a failed open is forgotten too.
 */
function cachedPerVhost<T>(channels: Map<string, Promise<T>>, vhost: string, open: (forget: () => void) => Promise<T>): Promise<T> {
  const cached = channels.get(vhost);
  if (cached) return cached;
  const forget = () => {
    if (channels.get(vhost) === opening) channels.delete(vhost);
  };
  const opening = open(forget);
  channels.set(vhost, opening);
  opening.catch(forget);
  return opening;
}
