/**
 * Firehose capture's side of discovery (services/core/amqp/firehose.ts explains the mode): a vhost in
 * firehose mode gets the tracer, the firehose queue bound to the trace of every exchange that can
 * reach a protected queue, and the relay exchange; a vhost taken out of it has its firehose queue
 * drained, then deleted.
 */
import type { Channel } from 'amqplib';
import { fenceExchangeName, firehoseQueueName, type Logger, relayExchangeName, TRACE_EXCHANGE, traceKeyOf } from '../core/index.js';
import type { BindingInfo, ManagementClient } from '../core/amqp/index.js';

export interface FirehoseContext {
  namespace: string;
  management: ManagementClient;
  log: Logger;
}

/**
 * Firehose mode (services/core/amqp/firehose.ts): the tracer on, the firehose queue bound to the
 * trace of every exchange that can reach a protected queue (directly or through exchange-to-
 * exchange bindings), of the default exchange and of the fence exchange, and the relay exchange.
 */
export async function provisionFirehose(
context: FirehoseContext,
channel: Channel,
vhost: string,
queues: string[],
all: BindingInfo[],
existing: Set<string>,
): Promise<void> {
const { namespace, management, log } = context;
  const queue = firehoseQueueName(namespace);
  if (!existing.has(queue)) {
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-single-active-consumer': true } });
    log.info('vhost captured through the firehose: relay queue created', { vhost, relayQueue: queue });
  }
  await channel.assertExchange(relayExchangeName(namespace), 'direct', { durable: true });
  if (!(await management.vhostTracing(vhost))) {
    await management.setVhostTracing(vhost, true);
    log.warn('turned on the firehose tracer of a vhost (TIDEMARK_FIREHOSE_VHOSTS): every publish in it is now copied to the trace exchange', { vhost, exchange: TRACE_EXCHANGE });
  }
  const keys = new Set([traceKeyOf(''), traceKeyOf(fenceExchangeName(namespace)), ...reachingExchanges(queues, all).map(traceKeyOf)]);
  const current = all.filter((b) => b.destination === queue && b.destinationType === 'queue' && b.source === TRACE_EXCHANGE);
  for (const key of keys) await channel.bindQueue(queue, TRACE_EXCHANGE, key);
  for (const b of current) {
    if (!keys.has(b.routingKey)) await channel.unbindQueue(queue, TRACE_EXCHANGE, b.routingKey, b.arguments ?? {});
  }
}

/**
 * A vhost taken out of firehose mode: its journals are bound to the sources again (by the
 * caller), no new trace copies enter the firehose queue, and the queue is deleted once the relay
 * has emptied it. Returns true when it is gone.
 */
export async function drainFirehose(context: FirehoseContext, channel: Channel, vhost: string, all: BindingInfo[]): Promise<boolean> {
const queue = firehoseQueueName(context.namespace);
  for (const b of all.filter((b) => b.destination === queue && b.source === TRACE_EXCHANGE)) {
    await channel.unbindQueue(queue, TRACE_EXCHANGE, b.routingKey, b.arguments ?? {});
  }
  const { messageCount } = await channel.checkQueue(queue);
  if (messageCount > 0) {
    context.log.info('vhost left firehose mode: waiting for the relay queue to empty', { vhost, relayQueue: queue, messages: messageCount });
    return false;
  }
  await channel.deleteQueue(queue);
  context.log.warn('vhost left firehose mode: relay queue deleted; its tracer stays on (turn it off with rabbitmqctl trace_off if nothing else uses it)', { vhost, relayQueue: queue });
  return true;
}

/** Every exchange a publish can enter to reach one of `queues`, through any chain of exchange bindings. */
export function reachingExchanges(queues: string[], all: BindingInfo[]): string[] {
  const targets = new Set(queues);
  const found = new Set<string>();
  const pending: string[] = [];
  for (const b of all) {
    if (b.destinationType === 'queue' && targets.has(b.destination) && b.source !== '' && !found.has(b.source)) {
      found.add(b.source);
      pending.push(b.source);
    }
  }
  while (pending.length > 0) {
    const exchange = pending.pop()!;
    for (const b of all) {
      if (b.destinationType === 'exchange' && b.destination === exchange && !found.has(b.source)) {
        found.add(b.source);
        pending.push(b.source);
      }
    }
  }
  return [...found].sort();
}

