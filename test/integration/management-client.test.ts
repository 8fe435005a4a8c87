import { createServer } from 'node:net';
import amqp, { type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManagementClient } from '../../services/core/amqp/management-client.js';
import { queueBindings, type QueueDetails } from '../../services/core/amqp/management-types.js';
import { ConfigError, TransientError } from '../../services/core/errors.js';
import { amqpUrlForVhost, testServices, uniqueName } from '../helpers/services.js';

// A '/' in the name checks that vhosts are URL-encoded on every call.
const vhost = `${uniqueName('tm-mgmt')}/team`;
let mgmt: ManagementClient;
let managementUrl: string;
let conn: ChannelModel;
let exclusiveQueue: string;

beforeAll(async () => {
  const services = await testServices();
  managementUrl = services.managementUrl;
  mgmt = new ManagementClient(managementUrl, { timeoutMs: 5000 });
  await mgmt.createVhost(vhost);
  await mgmt.setPermissions(vhost, decodeURIComponent(new URL(managementUrl).username) || 'guest', {
    configure: '.*',
    write: '.*',
    read: '.*',
  });

  conn = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
  const ch = await conn.createConfirmChannel();
  await ch.assertExchange('orders', 'topic', { durable: true });
  await ch.assertExchange('by-region', 'headers', { durable: true, arguments: { 'alternate-exchange': 'orders' } });
  await ch.assertExchange('audit', 'fanout', { durable: false, autoDelete: true, internal: true });
  await ch.assertQueue('orders.classic', { durable: true, arguments: { 'x-max-length': 1000, 'x-message-ttl': 60000 } });
  await ch.assertQueue('orders.quorum', { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': 5 } });
  await ch.bindQueue('orders.classic', 'orders', 'eu.#');
  await ch.bindQueue('orders.quorum', 'orders', 'eu.#');
  await ch.bindQueue('orders.quorum', 'by-region', '', { 'x-match': 'all', region: 'eu' });
  await ch.bindExchange('audit', 'orders', '#');
  exclusiveQueue = (await ch.assertQueue('', { exclusive: true })).queue;
  for (let i = 0; i < 3; i++) ch.publish('orders', `eu.${i}`, Buffer.from(`m${i}`));
  await ch.waitForConfirms();
});

afterAll(async () => {
  await conn?.close();
  await mgmt?.deleteVhost(vhost);
});

describe('ManagementClient against RabbitMQ', () => {
  it('lists the vhost and the server versions', async () => {
    expect(await mgmt.listVhosts()).toContain(vhost);
    const overview = await mgmt.overview();
    expect(overview.rabbitmqVersion).toMatch(/^\d+\.\d+/);
    expect(overview.managementVersion).toMatch(/^\d+\.\d+/);
  });

  it('lists classic and quorum queues with their types, flags and arguments', async () => {
    const queues = await mgmt.listQueues(vhost);
    const byName = new Map(queues.map((q) => [q.name, q]));
    expect(byName.get('orders.classic')).toEqual({
      name: 'orders.classic',
      vhost,
      type: 'classic',
      durable: true,
      autoDelete: false,
      exclusive: false,
      arguments: { 'x-max-length': 1000, 'x-message-ttl': 60000 },
    });
    expect(byName.get('orders.quorum')).toEqual({
      name: 'orders.quorum',
      vhost,
      type: 'quorum',
      durable: true,
      autoDelete: false,
      exclusive: false,
      arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': 5 },
    });
    expect(byName.get(exclusiveQueue)).toMatchObject({ type: 'classic', exclusive: true, durable: false });
    expect(queues).toHaveLength(3);
  });

  it('follows pagination to the last page', async () => {
    const paged = new ManagementClient(managementUrl, { pageSize: 2 });
    expect((await paged.listQueues(vhost)).map((q) => q.name).sort()).toEqual(['orders.classic', 'orders.quorum', exclusiveQueue].sort());
    expect((await paged.listExchanges(vhost)).length).toBe((await mgmt.listExchanges(vhost)).length);
  });

  it('lists bindings with default-exchange ones, and queueBindings keeps only the explicit ones', async () => {
    const bindings = await mgmt.listBindings(vhost);
    expect(bindings).toContainEqual(
      expect.objectContaining({ source: '', destination: 'orders.quorum', destinationType: 'queue', routingKey: 'orders.quorum' }),
    );
    expect(bindings).toContainEqual(
      expect.objectContaining({ source: 'orders', destination: 'audit', destinationType: 'exchange', routingKey: '#' }),
    );
    const quorum = queueBindings(bindings, 'orders.quorum');
    expect(quorum.map(({ source, routingKey, arguments: args }) => ({ source, routingKey, args }))).toEqual(
      expect.arrayContaining([
        { source: 'orders', routingKey: 'eu.#', args: {} },
        { source: 'by-region', routingKey: '', args: { 'x-match': 'all', region: 'eu' } },
      ]),
    );
    expect(quorum).toHaveLength(2);
    expect(quorum.every((b) => b.propertiesKey.length > 0)).toBe(true);
    expect(queueBindings(bindings, 'orders.classic').map((b) => b.source)).toEqual(['orders']);
  });

  it('lists exchanges with their types, flags and arguments, the default exchange included', async () => {
    const exchanges = new Map((await mgmt.listExchanges(vhost)).map((e) => [e.name, e]));
    expect(exchanges.get('orders')).toEqual({ name: 'orders', vhost, type: 'topic', durable: true, autoDelete: false, internal: false, arguments: {} });
    expect(exchanges.get('by-region')).toMatchObject({ type: 'headers', arguments: { 'alternate-exchange': 'orders' } });
    expect(exchanges.get('audit')).toMatchObject({ type: 'fanout', durable: false, autoDelete: true, internal: true });
    expect(exchanges.get('')).toMatchObject({ type: 'direct' });
  });

  it("reports a queue's depth and publish count once the broker's stats catch up", async () => {
    // Queue stats are collected every few seconds (collect_statistics_interval, 5 s by default).
    let q: QueueDetails | undefined;
    for (let tries = 0; tries < 40; tries++) {
      q = await mgmt.getQueue(vhost, 'orders.quorum');
      if (q?.messages === 3 && q.publishCount === 3) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(q).toMatchObject({ name: 'orders.quorum', type: 'quorum', messages: 3, publishCount: 3 });
  });

  it('returns undefined for a missing queue or vhost', async () => {
    expect(await mgmt.getQueue(vhost, 'no-such-queue')).toBeUndefined();
    expect(await mgmt.getQueue(`${vhost}-missing`, 'orders.quorum')).toBeUndefined();
  });

  it('says the credentials were refused on a 401', async () => {
    const url = new URL(managementUrl);
    url.password = 'wrong-password';
    const err = await new ManagementClient(url.href).listVhosts().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/refused the credentials/);
    expect((err as Error).message).not.toContain('wrong-password');
  });

  it('points at the management plugin when the port refuses connections', async () => {
    const port = await freePort();
    const err = await new ManagementClient(`http://guest:guest@127.0.0.1:${port}`).overview().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientError);
    expect((err as Error).message).toContain('rabbitmq-plugins enable rabbitmq_management');
  });

  it('deletes a vhost idempotently', async () => {
    const extra = uniqueName('tm-mgmt-extra');
    await mgmt.createVhost(extra);
    expect(await mgmt.listVhosts()).toContain(extra);
    await mgmt.deleteVhost(extra);
    await mgmt.deleteVhost(extra);
    expect(await mgmt.listVhosts()).not.toContain(extra);
  });
});

/** A port nothing listens on (bound, then released). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
