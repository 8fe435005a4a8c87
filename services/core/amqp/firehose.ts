/**
 * Firehose capture: the opt-in capture mode for vhosts whose producers publish to the default
 * exchange, which no binding can see.
 *
 * In such a vhost RabbitMQ's tracer copies every publish to `amq.rabbitmq.trace`; a Tidemark-owned
 * quorum queue (the firehose queue) receives the copies for the exchanges that reach protected
 * queues, the default exchange and the fence exchange. One worker at a time (single active
 * consumer) relays each copy, in the firehose queue's order, into the journals of the protected
 * queues it was routed to, through a direct exchange that only Tidemark publishes to. Journals in
 * such a vhost are bound to nothing else, so every record in a journal (fences included) arrives
 * in the one order the tracer saw: a checkpoint's cut stays an exact journal prefix.
 *
 * The relayed copy carries the original exchange, routing key, user-id and CC in headers (a
 * publish by the relay cannot keep them as they were); capture puts them back, so a journal
 * record looks the same in both modes.
 *
 * This module holds the names and the pure conversions; the relay itself is in the worker.
 */
import type { MessageProperties, Options } from 'amqplib';
import type { QueueConsumers } from './management-types.js';
import { fenceExchangeName, journalName, isOwnObject } from '../format/names.js';
import { MalformedMessageError } from '../errors.js';

/** The quorum queue receiving the vhost's trace copies. */
export function firehoseQueueName(namespace: string): string {
  return `${namespace}.firehose`;
}

/** The direct exchange the relay publishes into journals through. */
export function relayExchangeName(namespace: string): string {
  return `${namespace}.relay`;
}

/** The routing key that reaches every journal of a firehose vhost through the relay exchange. */
export function relayFenceKey(namespace: string): string {
  return fenceExchangeName(namespace);
}

/** The vhosts of the `firehoseVhosts` setting (comma-separated, blanks ignored). */
export function firehoseVhostsOf(setting: string): Set<string> {
  return new Set(setting.split(',').map((v) => v.trim()).filter((v) => v !== ''));
}

/** What status shows of one firehose vhost's relay (FirehoseRelay in admin.proto). */
export interface RelayView {
  vhost: string;
  activeWorker: string;
  standbyWorkers: string[];
  backlog: number;
  error: string;
}

/**
 * The relay of `vhost` from its firehose queue's consumers (undefined: the queue does not exist).
 * Consumers that are not relays (someone else reading the queue) are left out.
 */
export function relayView(vhost: string, queue: QueueConsumers | undefined): RelayView {
  if (!queue) return relayUnknown(vhost, 'the firehose queue does not exist yet (the leader declares it on its next discovery pass)');
  let activeWorker = '';
  const standbyWorkers: string[] = [];
  for (const c of queue.consumers) {
    const worker = relayWorkerOf(c.tag);
    if (worker === undefined) continue;
    if (c.active && activeWorker === '') activeWorker = worker;
    else standbyWorkers.push(worker);
  }
  return { vhost, activeWorker, standbyWorkers: standbyWorkers.sort(), backlog: queue.messages ?? 0, error: '' };
}

/** A relay that could not be looked at, and why. */
export function relayUnknown(vhost: string, error: string): RelayView {
  return { vhost, activeWorker: '', standbyWorkers: [], backlog: 0, error };
}

/** Prefix of the consumer tag a worker's relay consumes the firehose queue with. */
const RELAY_CONSUMER_TAG_PREFIX = 'tidemark-relay:';

/** The consumer tag of worker `workerId`'s relay: the broker's consumer list then names the worker. */
export function relayConsumerTag(workerId: string): string {
  return `${RELAY_CONSUMER_TAG_PREFIX}${workerId}`;
}

/** The worker id in a relay's consumer tag, or undefined for any other consumer. */
export function relayWorkerOf(consumerTag: string): string | undefined {
  return consumerTag.startsWith(RELAY_CONSUMER_TAG_PREFIX) ? consumerTag.slice(RELAY_CONSUMER_TAG_PREFIX.length) : undefined;
}

/** The exchange RabbitMQ's tracer publishes to. */
export const TRACE_EXCHANGE = 'amq.rabbitmq.trace';

/** The tracer's routing key for a publish to `exchange` ('' is the default exchange). */
export function traceKeyOf(exchange: string): string {
  return `publish.${exchange}`;
}

export const RELAY_EXCHANGE_HEADER = 'x-tidemark-relay-exchange';
export const RELAY_ROUTING_KEY_HEADER = 'x-tidemark-relay-routing-key';
export const RELAY_USER_ID_HEADER = 'x-tidemark-relay-user-id';
export const RELAY_CC_HEADER = 'x-tidemark-relay-cc';
/**
 * Set on a copy relayed from a trace message the firehose queue delivered again (after a relay
 * failover): the journal may already hold it. Kept in the record, so a restore carries it.
 */
export const RELAY_REDELIVERED_HEADER = 'x-tidemark-relay-redelivered';

const RELAY_HEADERS = [RELAY_EXCHANGE_HEADER, RELAY_ROUTING_KEY_HEADER, RELAY_USER_ID_HEADER, RELAY_CC_HEADER];

/** What the tracer recorded of one publish. */
export interface TracedPublish {
  exchange: string;
  routingKeys: string[];
  routedQueues: string[];
  /** The publish's properties, in the tracer's snake_case table. */
  properties: Record<string, unknown>;
}

/** Reads a trace message's headers; throws on one that is not a publish trace. */
export function parseTrace(headers: Record<string, unknown> | undefined): TracedPublish {
  if (!headers || typeof headers.exchange_name !== 'string') {
    throw new MalformedMessageError('trace message without an exchange_name header: not a publish trace');
  }
  const strings = (value: unknown): string[] => (Array.isArray(value) ? value.map((v) => String(v)) : []);
  const properties = headers.properties;
  return {
    exchange: headers.exchange_name,
    routingKeys: strings(headers.routing_keys),
    routedQueues: strings(headers.routed_queues),
    properties: properties && typeof properties === 'object' && !Array.isArray(properties) ? (properties as Record<string, unknown>) : {},
  };
}

/** The journal of `queue` as a list of one, or none when no journal name fits its vhost. */
function journalOf(namespace: string, vhost: string, queue: string): string[] {
  try {
    return [journalName(namespace, vhost, queue)];
  } catch {
    return [];
  }
}

/** How the relay publishes one traced publish, or undefined when no journal should get it. */
export interface RelayPublish {
  routingKey: string;
  options: Options.Publish;
}

/**
 * The relay's publish for a traced publish: a fence goes to every journal of the vhost; anything
 * else to the journals of the queues it was routed to (protected or not: only protected queues
 * have a journal bound under their name; a queue of `vhost` no journal name fits has none).
 * Tidemark's own publishes are not relayed.
 */
export function relayPublishOf(namespace: string, vhost: string, traced: TracedPublish, redelivered: boolean): RelayPublish | undefined {
  const isFence = traced.exchange === fenceExchangeName(namespace);
  if (!isFence && isOwnObject(namespace, traced.exchange)) return undefined;
  const journals = isFence
    ? [relayFenceKey(namespace)]
    : traced.routedQueues.filter((q) => !isOwnObject(namespace, q)).flatMap((q) => journalOf(namespace, vhost, q));
  if (journals.length === 0) return undefined;
  const p = traced.properties;
  const text = (key: string): string | undefined => (typeof p[key] === 'string' ? (p[key] as string) : undefined);
  const num = (key: string): number | undefined => (typeof p[key] === 'number' ? (p[key] as number) : undefined);
  const original = p.headers && typeof p.headers === 'object' && !Array.isArray(p.headers) ? { ...(p.headers as Record<string, unknown>) } : {};
  const headers: Record<string, unknown> = { ...original };
  // CC routes a publish; the relay's publish must route only to the journals.
  delete headers.CC;
  delete headers.BCC;
  if (original.CC !== undefined) headers[RELAY_CC_HEADER] = JSON.stringify(original.CC);
  headers[RELAY_EXCHANGE_HEADER] = traced.exchange;
  headers[RELAY_ROUTING_KEY_HEADER] = traced.routingKeys[0] ?? '';
  // RabbitMQ refuses a user-id that is not the publishing connection's user.
  const userId = text('user_id');
  if (userId !== undefined) headers[RELAY_USER_ID_HEADER] = userId;
  if (redelivered) headers[RELAY_REDELIVERED_HEADER] = true;
  if (journals.length > 1) headers.BCC = journals.slice(1);
  const options: Options.Publish = {
    headers,
    contentType: text('content_type'),
    contentEncoding: text('content_encoding'),
    deliveryMode: num('delivery_mode'),
    priority: num('priority'),
    correlationId: text('correlation_id'),
    replyTo: text('reply_to'),
    expiration: text('expiration'),
    messageId: text('message_id'),
    timestamp: num('timestamp'),
    type: text('type'),
    appId: text('app_id'),
  };
  for (const key of Object.keys(options) as Array<keyof Options.Publish>) {
    if (options[key] === undefined) delete options[key];
  }
  return { routingKey: journals[0], options };
}

/**
 * A journal record's exchange, routing key and properties as the producer published them: for a
 * relayed copy, the relay's headers are taken back out; anything else is returned as it is.
 */
export function unwrapRelayed(
  fields: { exchange: string; routingKey: string },
  properties: MessageProperties,
): { exchange: string; routingKey: string; properties: MessageProperties } {
  const headers = properties.headers as Record<string, unknown> | undefined;
  if (!headers || typeof headers[RELAY_EXCHANGE_HEADER] !== 'string') return { exchange: fields.exchange, routingKey: fields.routingKey, properties };
  const kept: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(headers)) {
    if (!RELAY_HEADERS.includes(key)) kept[key] = value;
  }
  const cc = headers[RELAY_CC_HEADER];
  if (typeof cc === 'string') {
    try {
      kept.CC = JSON.parse(cc);
    } catch {
      kept[RELAY_CC_HEADER] = cc;
    }
  }
  const userId = headers[RELAY_USER_ID_HEADER];
  return {
    exchange: headers[RELAY_EXCHANGE_HEADER] as string,
    routingKey: String(headers[RELAY_ROUTING_KEY_HEADER] ?? ''),
    properties: { ...properties, headers: kept, userId: typeof userId === 'string' ? userId : properties.userId },
  };
}
