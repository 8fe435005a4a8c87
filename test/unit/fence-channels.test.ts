import { EventEmitter } from 'node:events';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { FenceChannels } from '../../services/coordinator/fence-channels.js';
import { silentLogger } from '../../services/core/infrastructure/log.js';

type Confirm = (err: Error | null) => void;

/** A confirm channel that behaves like amqplib's where the fence channels rely on it. */
class FakeChannel extends EventEmitter {
  readonly unconfirmed: Confirm[] = [];
  closed = false;

  publish(_exchange: string, _key: string, _content: Buffer, _options: unknown, confirm: Confirm): boolean {
    if (this.closed) throw new Error('Channel closed');
    this.unconfirmed.push(confirm);
    return true;
  }

  /** The broker confirms (or nacks) the oldest unconfirmed message. */
  settle(index: number, err: Error | null = null): void {
    this.unconfirmed.splice(index, 1)[0](err);
  }

  /** The channel goes away (the broker closed it or its connection): unconfirmed publishes fail. */
  lose(): void {
    this.closed = true;
    for (const confirm of this.unconfirmed.splice(0)) confirm(new Error('channel closed'));
    this.emit('close');
  }

  async close(): Promise<void> {
    this.lose();
  }
}

function fakeBroker() {
  const channels: FakeChannel[] = [];
  const connection = {
    async createConfirmChannel() {
      const channel = new FakeChannel();
      channels.push(channel);
      return channel as unknown as ConfirmChannel;
    },
  } as unknown as ChannelModel;
  return { channels, fences: new FenceChannels(async () => connection, silentLogger) };
}

/** Publishes a fence and lets the fake broker see it before the test acts on it. */
async function publish(fences: FenceChannels, vhost = '/'): Promise<{ outcome: Promise<string> }> {
  const outcome = fences.publish(vhost, 'tidemark.fence', Buffer.from('fence'), {}).then(
    () => 'confirmed',
    (err: Error) => `failed: ${err.message}`,
  );
  await new Promise((r) => setImmediate(r));
  return { outcome };
}

describe('fence channels', () => {
  it('publishes every round on the same channel of a vhost, one channel per vhost', async () => {
    const { channels, fences } = fakeBroker();
    for (let round = 0; round < 3; round += 1) {
      const { outcome } = await publish(fences);
      channels[0].settle(0);
      expect(await outcome).toBe('confirmed');
    }
    await publish(fences, 'other');
    expect(channels).toHaveLength(2);
  });

  it('settles each fence by its own confirm, not by the other publishes on the channel', async () => {
    const { channels, fences } = fakeBroker();
    const first = await publish(fences);
    const second = await publish(fences);
    channels[0].settle(1);
    expect(await second.outcome).toBe('confirmed');
    channels[0].settle(0, new Error('message nacked'));
    expect(await first.outcome).toBe('failed: message nacked');
  });

  it('fails a fence whose channel closes before its confirm, and opens a new channel for the next', async () => {
    const { channels, fences } = fakeBroker();
    const lost = await publish(fences);
    channels[0].lose();
    expect(await lost.outcome).toBe('failed: channel closed');

    const next = await publish(fences);
    expect(channels).toHaveLength(2);
    channels[1].settle(0);
    expect(await next.outcome).toBe('confirmed');
  });

  it('never reuses a channel that closed while idle between rounds', async () => {
    const { channels, fences } = fakeBroker();
    const first = await publish(fences);
    channels[0].settle(0);
    await first.outcome;
    channels[0].lose(); // e.g. the broker dropped the connection between two rounds
    const next = await publish(fences);
    channels[1].settle(0);
    expect(await next.outcome).toBe('confirmed');
  });

  it('closes its channels when the leader stops, and opens new ones if it leads again', async () => {
    const { channels, fences } = fakeBroker();
    const first = await publish(fences);
    channels[0].settle(0);
    await first.outcome;
    await fences.close();
    expect(channels[0].closed).toBe(true);
    const next = await publish(fences);
    channels[1].settle(0);
    expect(await next.outcome).toBe('confirmed');
  });
});
