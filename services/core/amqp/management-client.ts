/**
 * A small client for the RabbitMQ management API: discovery of vhosts, queues, exchanges and
 * bindings, queue counters for coverage, node resources, and the few admin calls tests and
 * restores need. The HTTP side is management-http.ts; the shapes it returns, management-types.ts.
 */
import { httpsFetchWithCa } from './https-fetch.js';
import { NotFoundError } from '../errors.js';
import { enc, ManagementHttp } from './management-http.js';
import {
  type BindingInfo,
  type ConsumerInfo,
  type ExchangeInfo,
  type ManagementOverview,
  type NodeResources,
  type Permissions,
  type QueueConsumers,
  type QueueCensusCounters,
  type QueueCounts,
  type QueueDetails,
  type QueueInfo,
  queueInfo,
  type RawBinding,
  type RawExchange,
  type RawQueue,
} from './management-types.js';

/** Options for {@link ManagementClient}. */
export interface ManagementClientOptions {
  /** Abort each HTTP request after this many milliseconds. @default 10000 */
  timeoutMs?: number;
  /** Page size for queue and exchange listings (the API allows at most 500). @default 500 */
  pageSize?: number;
  /** CA certificates (PEM) an https:// management API's certificate must chain to. @default the system's roots */
  ca?: Buffer;
}

const NODE_COLUMNS =
  'name,running,fd_used,fd_total,mem_used,mem_limit,mem_alarm,disk_free,disk_free_limit,disk_free_alarm,sockets_used,sockets_total,proc_used,proc_total';
const QUEUE_COLUMNS = 'name,vhost,type,durable,auto_delete,exclusive,owner_pid_details,arguments,policy';
const EXCHANGE_COLUMNS = 'name,vhost,type,durable,auto_delete,internal,arguments';

export class ManagementClient {
  /** The API root without credentials, e.g. `http://localhost:15672/api/`; safe to log. */
  readonly apiUrl: string;
  private readonly http: ManagementHttp;

  /** @param url management base URL with credentials, e.g. `http://guest:guest@localhost:15672`. */
  constructor(url: string, options: ManagementClientOptions = {}) {
    this.http = new ManagementHttp(url, options.timeoutMs ?? 10_000, Math.min(options.pageSize ?? 500, 500), options.ca ? httpsFetchWithCa(options.ca) : fetch);
    this.apiUrl = this.http.apiUrl;
  }

  async overview(): Promise<ManagementOverview> {
    const o = await this.http.request<Record<string, unknown>>('GET', 'overview?columns=management_version,rabbitmq_version,cluster_name,node');
    return {
      managementVersion: String(o.management_version ?? ''),
      rabbitmqVersion: String(o.rabbitmq_version ?? ''),
      clusterName: String(o.cluster_name ?? ''),
      node: String(o.node ?? ''),
    };
  }

  /** Every node's resources and alarms (needs the `monitoring` or `administrator` tag). */
  async nodes(): Promise<NodeResources[]> {
    const rows = await this.http.request<Record<string, unknown>[]>('GET', `nodes?columns=${NODE_COLUMNS}`);
    const num = (value: unknown) => (typeof value === 'number' && Number.isFinite(value) ? value : undefined);
    return rows.map((n) => ({
      name: String(n.name ?? ''),
      running: n.running !== false,
      fdUsed: num(n.fd_used),
      fdTotal: num(n.fd_total),
      memUsed: num(n.mem_used),
      memLimit: num(n.mem_limit),
      memAlarm: n.mem_alarm === true,
      diskFree: num(n.disk_free),
      diskFreeLimit: num(n.disk_free_limit),
      diskFreeAlarm: n.disk_free_alarm === true,
      socketsUsed: num(n.sockets_used),
      socketsTotal: num(n.sockets_total),
      procUsed: num(n.proc_used),
      procTotal: num(n.proc_total),
    }));
  }

  async listVhosts(): Promise<string[]> {
    const rows = await this.http.request<{ name: string }[]>('GET', 'vhosts?columns=name');
    return rows.map((r) => r.name);
  }

  async listQueues(vhost: string): Promise<QueueInfo[]> {
    const rows = await this.http.paged<RawQueue>(`queues/${enc(vhost)}`, QUEUE_COLUMNS);
    return rows.map(queueInfo);
  }

  /** One queue with its counters; undefined if the queue (or its vhost) does not exist. */
  async getQueue(vhost: string, name: string): Promise<QueueDetails | undefined> {
    const path = `queues/${enc(vhost)}/${enc(name)}?columns=${QUEUE_COLUMNS},messages,message_stats.publish`;
    let raw: RawQueue & { messages?: number; message_stats?: { publish?: number } };
    try {
      raw = await this.http.request('GET', path);
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
    return {
      ...queueInfo(raw),
      messages: typeof raw.messages === 'number' ? raw.messages : undefined,
      publishCount: typeof raw.message_stats?.publish === 'number' ? raw.message_stats.publish : undefined,
    };
  }

  /**
   * A queue's consumers (with single active consumer, which of them the broker feeds) and its
   * depth; undefined if the queue (or its vhost) does not exist. A consumer appears once the
   * broker's statistics include it (up to its collection interval, 5 s by default).
   */
  async queueConsumers(vhost: string, name: string): Promise<QueueConsumers | undefined> {
    type RawConsumer = { consumer_tag?: string; active?: boolean };
    let raw: { messages?: number; consumer_details?: RawConsumer[] };
    try {
      raw = await this.http.request('GET', `queues/${enc(vhost)}/${enc(name)}?columns=messages,consumer_details`);
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
    return {
      messages: typeof raw.messages === 'number' ? raw.messages : undefined,
      consumers: (raw.consumer_details ?? []).map((c) => ({ tag: String(c.consumer_tag ?? ''), active: c.active === true })),
    };
  }

  /**
   * Every binding of the vhost, including the implicit default-exchange binding the API lists for
   * each queue (source ""). Use {@link queueBindings} for a queue's explicit bindings.
   */
  async listBindings(vhost: string): Promise<BindingInfo[]> {
    const rows = await this.http.request<RawBinding[]>('GET', `bindings/${enc(vhost)}`);
    return rows.map((b) => ({
      source: b.source,
      destination: b.destination,
      destinationType: b.destination_type,
      routingKey: b.routing_key,
      arguments: b.arguments ?? {},
      propertiesKey: b.properties_key,
    }));
  }

  async listExchanges(vhost: string): Promise<ExchangeInfo[]> {
    const rows = await this.http.paged<RawExchange>(`exchanges/${enc(vhost)}`, EXCHANGE_COLUMNS);
    return rows.map((e) => ({
      name: e.name,
      vhost: e.vhost,
      type: e.type,
      durable: e.durable,
      autoDelete: e.auto_delete,
      internal: e.internal,
      arguments: e.arguments ?? {},
    }));
  }

  /** Whether the vhost's firehose tracer is on. */
  async vhostTracing(vhost: string): Promise<boolean> {
    const row = await this.http.request<{ tracing?: boolean }>('GET', `vhosts/${enc(vhost)}?columns=tracing`);
    return row.tracing === true;
  }

  /**
   * Turns the vhost's firehose tracer on or off. The API sets every vhost field a PUT names, so
   * the description and tags are sent back as they are.
   */
  async setVhostTracing(vhost: string, on: boolean): Promise<void> {
    const row = await this.http.request<{ description?: string; tags?: string[] | string }>('GET', `vhosts/${enc(vhost)}`);
    const tags = Array.isArray(row.tags) ? row.tags.join(',') : (row.tags ?? '');
    await this.http.request('PUT', `vhosts/${enc(vhost)}`, { description: row.description ?? '', tags, tracing: on });
  }

  /**
   * Creates or replaces a (user) policy of a vhost. The user needs the `policymaker` tag (or
   * `administrator`).
   */
  async putPolicy(vhost: string, name: string, policy: { pattern: string; applyTo: 'queues' | 'exchanges' | 'all'; priority: number; definition: Record<string, unknown> }): Promise<void> {
    await this.http.request('PUT', `policies/${enc(vhost)}/${enc(name)}`, {
      pattern: policy.pattern,
      'apply-to': policy.applyTo,
      priority: policy.priority,
      definition: policy.definition,
    });
  }

  async createVhost(name: string): Promise<void> {
    await this.http.request('PUT', `vhosts/${enc(name)}`, {});
  }

  /** Delete a vhost and everything in it; deleting a missing vhost is not an error. */
  async deleteVhost(name: string): Promise<void> {
    try {
      await this.http.request('DELETE', `vhosts/${enc(name)}`);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
  }

  async setPermissions(vhost: string, user: string, permissions: Permissions): Promise<void> {
    await this.http.request('PUT', `permissions/${enc(vhost)}/${enc(user)}`, permissions);
  }

  /**
   * The coverage counters of every queue of a vhost (see {@link QueueCounts}). A queue the broker
   * has not reported statistics for yet (no `messages`) is left out.
   */
  async queueCounts(vhost: string): Promise<Map<string, QueueCounts>> {
    type Stats = { publish?: number; ack?: number; deliver_no_ack?: number; get_no_ack?: number };
    const rows = await this.http.paged<{ name: string; messages?: number; message_stats?: Stats }>(
      `queues/${enc(vhost)}`,
      'name,messages,message_stats.publish,message_stats.ack,message_stats.deliver_no_ack,message_stats.get_no_ack',
      true,
    );
    const counts = new Map<string, QueueCounts>();
    for (const { name, messages, message_stats: s = {} } of rows) {
      if (typeof messages !== 'number') continue;
      counts.set(name, { published: s.publish ?? 0, messages, consumed: (s.ack ?? 0) + (s.deliver_no_ack ?? 0) + (s.get_no_ack ?? 0) });
    }
    return counts;
  }

  /**
   * Each consumer of the vhost's queues, by queue name: its prefetch and whether it acknowledges.
   * Consumers appear here within about 0.3 s of basic.consume (event-driven, unlike the queue
   * statistics; docs/HEAD-AT-THE-CUT.md).
   */
  async consumersByQueue(vhost: string): Promise<Map<string, ConsumerInfo[]>> {
    type Raw = { queue?: { name?: string }; prefetch_count?: number; ack_required?: boolean; consumer_tag?: string };
    const rows = await this.http.request<Raw[]>('GET', `consumers/${enc(vhost)}`);
    const byQueue = new Map<string, ConsumerInfo[]>();
    for (const row of rows) {
      const name = row.queue?.name;
      if (name === undefined) continue;
      const list = byQueue.get(name) ?? [];
      list.push({ tag: String(row.consumer_tag ?? ''), prefetch: Number(row.prefetch_count ?? 0), ackRequired: row.ack_required !== false });
      byQueue.set(name, list);
    }
    return byQueue;
  }

  /**
   * The census counters of every queue of a vhost (see {@link QueueCensusCounters}): cumulative,
   * so a change is exact once it arrives, up to the statistics interval (about 5 s) late.
   */
  async censusCounters(vhost: string): Promise<Map<string, QueueCensusCounters>> {
    type Stats = { redeliver?: number; get?: number; publish_details?: { rate?: number } };
    const rows = await this.http.paged<{ name: string; effective_policy_definition?: Record<string, unknown> | unknown[]; message_stats?: Stats }>(
      `queues/${enc(vhost)}`,
      'name,effective_policy_definition,message_stats.redeliver,message_stats.get,message_stats.publish_details',
      true,
    );
    const counters = new Map<string, QueueCensusCounters>();
    for (const { name, effective_policy_definition: policy, message_stats: s = {} } of rows) {
      counters.set(name, {
        redeliver: s.redeliver ?? 0,
        get: s.get ?? 0,
        publishRate: s.publish_details?.rate ?? 0,
        policy: policy && !Array.isArray(policy) ? policy : {},
      });
    }
    return counters;
  }

  /**
   * The definitions of a vhost's (user) policies by name. Operator policies are left out: they
   * cannot set a dead-letter exchange or a federation upstream.
   */
  async listPolicies(vhost: string): Promise<Map<string, Record<string, unknown>>> {
    const rows = await this.http.request<Array<{ name: string; definition?: Record<string, unknown> }>>('GET', `policies/${enc(vhost)}`);
    return new Map(rows.map((p) => [p.name, p.definition ?? {}]));
  }
}
