/**
 * What the RabbitMQ management API reports, as Tidemark reads it: queues, exchanges, bindings,
 * consumers, counters and node resources, the raw JSON shapes they are read from, and the
 * conversions between the two.
 */

export interface QueueInfo {
  name: string;
  vhost: string;
  /** "classic", "quorum" or "stream". */
  type: string;
  durable: boolean;
  autoDelete: boolean;
  exclusive: boolean;
  arguments: Record<string, unknown>;
  /** Name of the (user) policy applied to the queue, if any; see `ManagementClient.listPolicies`. */
  policy?: string;
}

export interface QueueDetails extends QueueInfo {
  /** Messages in the queue (ready + unacknowledged), when the broker reports it. */
  messages: number | undefined;
  /** `message_stats.publish`: messages routed into the queue since its stats began, if reported. */
  publishCount: number | undefined;
}

/**
 * A queue's counters for coverage, from its `message_stats` (absent ones as 0) and its depth:
 * what the broker counts entering and leaving it since its statistics began.
 */
export interface QueueCounts {
  /** `publish`: messages routed into the queue by a publish (not by dead-lettering). */
  published: number;
  /** `messages`: ready and unacknowledged. */
  messages: number;
  /** `ack` + `deliver_no_ack` + `get_no_ack`: messages that left to a consumer for good. */
  consumed: number;
}

export interface BindingInfo {
  source: string;
  destination: string;
  destinationType: 'queue' | 'exchange';
  routingKey: string;
  arguments: Record<string, unknown>;
  /** The API's identifier of the binding (routing key and an arguments hash). */
  propertiesKey: string;
}

export interface ExchangeInfo {
  name: string;
  vhost: string;
  type: string;
  durable: boolean;
  autoDelete: boolean;
  internal: boolean;
  arguments: Record<string, unknown>;
}

/** A queue's consumers as the broker lists them, and its depth. */
/** One consumer of a queue, as /api/consumers lists it. */
export interface ConsumerInfo {
  tag: string;
  /** basic.qos prefetch of the consumer (0: no limit). */
  prefetch: number;
  /** False for a no-ack consumer: the broker forgets a message when it delivers it. */
  ackRequired: boolean;
}

/** A queue's cumulative counters and effective policy, for the head census. */
export interface QueueCensusCounters {
  /** Messages delivered again (requeued, or redelivered after a consumer's channel closed). */
  redeliver: number;
  /** basic.get with acknowledgement: no prefetch bounds what such a client holds. */
  get: number;
  /** Publishes into the queue per second (averaged by the broker over its statistics interval). */
  publishRate: number;
  /** The definition of the policy that applies to the queue (empty if none). */
  policy: Record<string, unknown>;
}

export interface QueueConsumers {
  /** Messages in the queue (ready + unacknowledged), when the broker reports it. */
  messages: number | undefined;
  consumers: Array<{ tag: string; active: boolean }>;
}

export interface ManagementOverview {
  managementVersion: string;
  rabbitmqVersion: string;
  clusterName: string;
  node: string;
}

/**
 * One broker node's resources as /api/nodes reports them (RabbitMQ refreshes them every stats
 * interval, 5 s by default). A node that is not running reports no figures: `running` is false
 * and the numbers are undefined.
 */
export interface NodeResources {
  name: string;
  running: boolean;
  fdUsed?: number;
  fdTotal?: number;
  memUsed?: number;
  memLimit?: number;
  memAlarm: boolean;
  diskFree?: number;
  diskFreeLimit?: number;
  diskFreeAlarm: boolean;
  socketsUsed?: number;
  socketsTotal?: number;
  procUsed?: number;
  procTotal?: number;
}

export interface Permissions {
  configure: string;
  write: string;
  read: string;
}

/**
 * The explicit bindings of a queue: from a named exchange to the queue. The API also lists each
 * queue's implicit default-exchange binding (source ""), which cannot be created or copied.
 */
export function queueBindings(bindings: readonly BindingInfo[], queueName: string): BindingInfo[] {
  return bindings.filter((b) => b.destinationType === 'queue' && b.destination === queueName && b.source !== '');
}

/** A queue as the API lists it. */
export interface RawQueue {
  name: string;
  vhost: string;
  type?: string;
  durable: boolean;
  auto_delete: boolean;
  exclusive?: boolean;
  owner_pid_details?: unknown;
  arguments?: Record<string, unknown>;
  policy?: string | null;
}

/** A binding as the API lists it. */
export interface RawBinding {
  source: string;
  destination: string;
  destination_type: 'queue' | 'exchange';
  routing_key: string;
  arguments?: Record<string, unknown>;
  properties_key: string;
}

/** An exchange as the API lists it. */
export interface RawExchange {
  name: string;
  vhost: string;
  type: string;
  durable: boolean;
  auto_delete: boolean;
  internal: boolean;
  arguments?: Record<string, unknown>;
}

/** A listed queue as {@link QueueInfo}; a queue with an owner is exclusive. */
export function queueInfo(q: RawQueue): QueueInfo {
  return {
    name: q.name,
    vhost: q.vhost,
    type: q.type ?? 'classic',
    durable: q.durable,
    autoDelete: q.auto_delete,
    exclusive: q.exclusive === true || (q.owner_pid_details !== undefined && q.owner_pid_details !== null),
    arguments: q.arguments ?? {},
    ...(typeof q.policy === 'string' && q.policy !== '' ? { policy: q.policy } : {}),
  };
}
