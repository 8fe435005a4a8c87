/**
 * A small client for the RabbitMQ management HTTP API: discovery of vhosts, queues, exchanges and
 * bindings, queue counters for coverage, and the few admin calls tests and restores need.
 *
 * Node's fetch refuses URLs with credentials in them, so the user and password are taken out of
 * the configured URL and sent as a Basic Authorization header.
 */
import { ConfigError, NotFoundError, TidemarkError, TransientError, errorMessage } from '../errors.js';

/** Options for {@link ManagementClient}. */
export interface ManagementClientOptions {
  /** Abort each HTTP request after this many milliseconds. @default 10000 */
  timeoutMs?: number;
  /** Page size for queue and exchange listings (the API allows at most 500). @default 500 */
  pageSize?: number;
}

export interface QueueInfo {
  name: string;
  vhost: string;
  /** "classic", "quorum" or "stream". */
  type: string;
  durable: boolean;
  autoDelete: boolean;
  exclusive: boolean;
  arguments: Record<string, unknown>;
  /** Name of the (user) policy applied to the queue, if any; see {@link ManagementClient.listPolicies}. */
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

const NODE_COLUMNS =
  'name,running,fd_used,fd_total,mem_used,mem_limit,mem_alarm,disk_free,disk_free_limit,disk_free_alarm,sockets_used,sockets_total,proc_used,proc_total';
const QUEUE_COLUMNS = 'name,vhost,type,durable,auto_delete,exclusive,owner_pid_details,arguments,policy';
const EXCHANGE_COLUMNS = 'name,vhost,type,durable,auto_delete,internal,arguments';

export class ManagementClient {
  /** The API root without credentials, e.g. `http://localhost:15672/api/`; safe to log. */
  readonly apiUrl: string;
  private readonly authorization: string;
  private readonly timeoutMs: number;
  private readonly pageSize: number;

  /** @param url management base URL with credentials, e.g. `http://guest:guest@localhost:15672`. */
  constructor(url: string, options: ManagementClientOptions = {}) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch (err) {
      throw new ConfigError(`management URL is not a valid URL; expected http://user:pass@host:15672`, { cause: err });
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new ConfigError(`management URL must be http(s)://user:pass@host:15672, got protocol ${parsed.protocol}`);
    }
    const user = decodeURIComponent(parsed.username);
    const pass = decodeURIComponent(parsed.password);
    if (!user) throw new ConfigError(`management URL ${parsed.host} has no credentials; use http://user:pass@${parsed.host}`);
    this.authorization = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
    parsed.username = '';
    parsed.password = '';
    parsed.search = '';
    parsed.hash = '';
    // A management UI behind a path prefix (`http://host/rabbitmq/`) keeps its prefix.
    parsed.pathname = `${parsed.pathname.replace(/\/+$/, '')}/api/`;
    this.apiUrl = parsed.toString();
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.pageSize = Math.min(options.pageSize ?? 500, 500);
  }

  async overview(): Promise<ManagementOverview> {
    const o = await this.request<Record<string, unknown>>('GET', 'overview?columns=management_version,rabbitmq_version,cluster_name,node');
    return {
      managementVersion: String(o.management_version ?? ''),
      rabbitmqVersion: String(o.rabbitmq_version ?? ''),
      clusterName: String(o.cluster_name ?? ''),
      node: String(o.node ?? ''),
    };
  }

  /** Every node's resources and alarms (needs the `monitoring` or `administrator` tag). */
  async nodes(): Promise<NodeResources[]> {
    const rows = await this.request<Record<string, unknown>[]>('GET', `nodes?columns=${NODE_COLUMNS}`);
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
    const rows = await this.request<{ name: string }[]>('GET', 'vhosts?columns=name');
    return rows.map((r) => r.name);
  }

  async listQueues(vhost: string): Promise<QueueInfo[]> {
    const rows = await this.paged<RawQueue>(`queues/${enc(vhost)}`, QUEUE_COLUMNS);
    return rows.map(queueInfo);
  }

  /** One queue with its counters; undefined if the queue (or its vhost) does not exist. */
  async getQueue(vhost: string, name: string): Promise<QueueDetails | undefined> {
    const path = `queues/${enc(vhost)}/${enc(name)}?columns=${QUEUE_COLUMNS},messages,message_stats.publish`;
    let raw: RawQueue & { messages?: number; message_stats?: { publish?: number } };
    try {
      raw = await this.request('GET', path);
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
      raw = await this.request('GET', `queues/${enc(vhost)}/${enc(name)}?columns=messages,consumer_details`);
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
    const rows = await this.request<RawBinding[]>('GET', `bindings/${enc(vhost)}`);
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
    const rows = await this.paged<RawExchange>(`exchanges/${enc(vhost)}`, EXCHANGE_COLUMNS);
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
    const row = await this.request<{ tracing?: boolean }>('GET', `vhosts/${enc(vhost)}?columns=tracing`);
    return row.tracing === true;
  }

  /**
   * Turns the vhost's firehose tracer on or off. The API sets every vhost field a PUT names, so
   * the description and tags are sent back as they are.
   */
  async setVhostTracing(vhost: string, on: boolean): Promise<void> {
    const row = await this.request<{ description?: string; tags?: string[] | string }>('GET', `vhosts/${enc(vhost)}`);
    const tags = Array.isArray(row.tags) ? row.tags.join(',') : (row.tags ?? '');
    await this.request('PUT', `vhosts/${enc(vhost)}`, { description: row.description ?? '', tags, tracing: on });
  }

  /**
   * Creates or replaces a (user) policy of a vhost. The user needs the `policymaker` tag (or
   * `administrator`).
   */
  async putPolicy(vhost: string, name: string, policy: { pattern: string; applyTo: 'queues' | 'exchanges' | 'all'; priority: number; definition: Record<string, unknown> }): Promise<void> {
    await this.request('PUT', `policies/${enc(vhost)}/${enc(name)}`, {
      pattern: policy.pattern,
      'apply-to': policy.applyTo,
      priority: policy.priority,
      definition: policy.definition,
    });
  }

  async createVhost(name: string): Promise<void> {
    await this.request('PUT', `vhosts/${enc(name)}`, {});
  }

  /** Delete a vhost and everything in it; deleting a missing vhost is not an error. */
  async deleteVhost(name: string): Promise<void> {
    try {
      await this.request('DELETE', `vhosts/${enc(name)}`);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
  }

  async setPermissions(vhost: string, user: string, permissions: Permissions): Promise<void> {
    await this.request('PUT', `permissions/${enc(vhost)}/${enc(user)}`, permissions);
  }

  /**
   * The coverage counters of every queue of a vhost (see {@link QueueCounts}). A queue the broker
   * has not reported statistics for yet (no `messages`) is left out.
   */
  async queueCounts(vhost: string): Promise<Map<string, QueueCounts>> {
    type Stats = { publish?: number; ack?: number; deliver_no_ack?: number; get_no_ack?: number };
    const rows = await this.paged<{ name: string; messages?: number; message_stats?: Stats }>(
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
   * The definitions of a vhost's (user) policies by name. Operator policies are left out: they
   * cannot set a dead-letter exchange or a federation upstream.
   */
  async listPolicies(vhost: string): Promise<Map<string, Record<string, unknown>>> {
    const rows = await this.request<Array<{ name: string; definition?: Record<string, unknown> }>>('GET', `policies/${enc(vhost)}`);
    return new Map(rows.map((p) => [p.name, p.definition ?? {}]));
  }

  /** Fetch all pages of a paginated listing, deduplicated by name (pages are not one snapshot). */
  private async paged<T extends { name: string }>(path: string, columns: string, stats = false): Promise<T[]> {
    const byName = new Map<string, T>();
    for (let page = 1; ; page++) {
      const body = await this.request<Page<T>>(
        'GET',
        `${path}?disable_stats=${!stats}&page=${page}&page_size=${this.pageSize}&columns=${columns}`,
      );
      for (const item of body.items) byName.set(item.name, item);
      if (page >= body.page_count) break;
    }
    return [...byName.values()];
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const url = this.apiUrl + path;
    const what = `${method} /api/${path.split('?')[0]}`;
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: {
          authorization: this.authorization,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw networkError(err, what, this.apiUrl, this.timeoutMs);
    }
    if (res.ok) {
      const text = await res.text();
      try {
        return (text === '' ? undefined : JSON.parse(text)) as T;
      } catch (err) {
        throw new TidemarkError(`${what} at ${this.apiUrl} answered with something that is not JSON: ${text.slice(0, 200)}`, { cause: err });
      }
    }
    const excerpt = (await res.text().catch(() => '')).slice(0, 300);
    switch (res.status) {
      case 401:
        throw new ConfigError(
          `RabbitMQ management API at ${this.apiUrl} refused the credentials (401 on ${what}); check the user and password in TIDEMARK_MANAGEMENT_URL`,
        );
      case 403:
        throw new ConfigError(
          `RabbitMQ management API at ${this.apiUrl} denied ${what} (403): the user needs the management tag (administrator for vhost and permission changes) and access to the vhost`,
        );
      case 404:
        throw new NotFoundError(`${what}: not found (404) at ${this.apiUrl}: ${excerpt}`);
      case 502:
      case 503:
      case 504:
        throw new TransientError(`${what} failed with HTTP ${res.status} at ${this.apiUrl}: ${excerpt}; retry later`);
      default:
        throw new TidemarkError(`${what} failed with HTTP ${res.status} at ${this.apiUrl}: ${excerpt}`);
    }
  }
}

/**
 * The explicit bindings of a queue: from a named exchange to the queue. The API also lists each
 * queue's implicit default-exchange binding (source ""), which cannot be created or copied.
 */
export function queueBindings(bindings: readonly BindingInfo[], queueName: string): BindingInfo[] {
  return bindings.filter((b) => b.destinationType === 'queue' && b.destination === queueName && b.source !== '');
}

/** A vhost or object name as one URL path segment ('/' → %2F). */
function enc(name: string): string {
  return encodeURIComponent(name);
}

function networkError(err: unknown, what: string, apiUrl: string, timeoutMs: number): TidemarkError {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
    return new TransientError(`${what} at ${apiUrl} timed out after ${timeoutMs} ms`, { cause: err });
  }
  const code = (err as { cause?: { code?: string } } | undefined)?.cause?.code;
  if (code === 'ECONNREFUSED') {
    return new TransientError(
      `cannot connect to the RabbitMQ management API at ${apiUrl} (connection refused): the management plugin may not be enabled; run \`rabbitmq-plugins enable rabbitmq_management\``,
      { cause: err },
    );
  }
  const detail = code ?? errorMessage((err as { cause?: unknown } | undefined)?.cause ?? err);
  return new TransientError(`${what} at ${apiUrl} failed: ${detail}`, { cause: err });
}

interface Page<T> {
  items: T[];
  page: number;
  page_count: number;
}

interface RawQueue {
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

interface RawBinding {
  source: string;
  destination: string;
  destination_type: 'queue' | 'exchange';
  routing_key: string;
  arguments?: Record<string, unknown>;
  properties_key: string;
}

interface RawExchange {
  name: string;
  vhost: string;
  type: string;
  durable: boolean;
  auto_delete: boolean;
  internal: boolean;
  arguments?: Record<string, unknown>;
}

function queueInfo(q: RawQueue): QueueInfo {
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
