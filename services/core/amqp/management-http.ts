/**
 * The HTTP side of the RabbitMQ management API client: authenticated JSON requests, paginated
 * listings, and HTTP and network failures as Tidemark error classes.
 *
 * Node's fetch refuses URLs with credentials in them, so the user and password are taken out of
 * the configured URL and sent as a Basic Authorization header.
 */
import type { FetchLike } from './https-fetch.js';
import { ConfigError, ManagementApiError, NotFoundError, TidemarkError, TransientError, errorMessage } from '../errors.js';

/** JSON requests to one management API, authenticated, with a time limit each. */
export class ManagementHttp {
  /** The API root without credentials, e.g. `http://localhost:15672/api/`; safe to log. */
  readonly apiUrl: string;
  private readonly authorization: string;

  /**
   * @param url management base URL with credentials, e.g. `http://guest:guest@localhost:15672`.
   * @param timeoutMs abort each request after this many milliseconds.
   * @param pageSize page size for paginated listings (the API allows at most 500).
   */
  constructor(
    url: string,
    private readonly timeoutMs: number,
    private readonly pageSize: number,
    /** How requests are sent: fetch, or one trusting a CA of its own (https-fetch.ts). @default fetch */
    private readonly send: FetchLike = fetch,
  ) {
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
  }

  /** Fetch all pages of a paginated listing, deduplicated by name (pages are not one snapshot). */
  async paged<T extends { name: string }>(path: string, columns: string, stats = false): Promise<T[]> {
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

  /**
   * One request, answered with its parsed JSON body. Failures arrive as Tidemark errors: 401 and 403
   * as ConfigError, 404 as NotFoundError, 502-504 and network failures as TransientError.
   */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const url = this.apiUrl + path;
    const what = `${method} /api/${path.split('?')[0]}`;
    let res: Awaited<ReturnType<FetchLike>>;
    try {
      res = await this.send(url, {
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
        throw new ManagementApiError(`${what} at ${this.apiUrl} answered with something that is not JSON: ${text.slice(0, 200)}`, { cause: err });
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
        throw new ManagementApiError(`${what} failed with HTTP ${res.status} at ${this.apiUrl}: ${excerpt}`);
    }
  }
}

/** A vhost or object name as one URL path segment ('/' → %2F). */
export function enc(name: string): string {
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

/** One page of a paginated listing. */
interface Page<T> {
  items: T[];
  page: number;
  page_count: number;
}
