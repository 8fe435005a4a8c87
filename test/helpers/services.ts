/**
 * One place that hands every test the URLs of RabbitMQ, its management API, Redis and an S3
 * server, wherever they run. The vitest globalSetup (global-setup.ts) decides once per run, per
 * service, in this order:
 *
 * 1. environment: TIDEMARK_TEST_AMQP_URL, TIDEMARK_TEST_MANAGEMENT_URL, TIDEMARK_TEST_REDIS_URL,
 *    TIDEMARK_TEST_S3_ENDPOINT with TIDEMARK_TEST_S3_ACCESS_KEY, TIDEMARK_TEST_S3_SECRET_KEY
 *    (and optionally TIDEMARK_TEST_S3_REGION);
 * 2. containers (testcontainers), when a Docker engine is reachable and
 *    TIDEMARK_TEST_CONTAINERS is not `false`;
 * 3. the services of this machine: RabbitMQ on localhost:5672/15672 as guest, Redis on 6379,
 *    and an s3rver that the globalSetup runs in a child process.
 *
 * Tests share the broker and Redis: isolate with {@link uniqueName} and a vhost of your own
 * ({@link createTestVhost}).
 */
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { ManagementClient } from '../../services/core/amqp/management-client.js';

/** How to reach an S3-compatible server. */
export interface TestS3 {
  /** http(s)://host:port */
  endpoint: string;
  accessKey: string;
  secretKey: string;
  region: string;
}

/** Service URLs for a test run. */
export interface TestServices {
  /** amqp://user:pass@host:port (default vhost). */
  amqpUrl: string;
  /** http://user:pass@host:port of the RabbitMQ management API. */
  managementUrl: string;
  /** redis://host:port */
  redisUrl: string;
  s3: TestS3;
}

declare module 'vitest' {
  export interface ProvidedContext {
    /** Set by test/helpers/global-setup.ts. */
    tidemarkServices: TestServices;
  }
}

/** The services of this test run, as resolved by the globalSetup. */
export async function testServices(): Promise<TestServices> {
  const services = inject('tidemarkServices');
  if (!services) {
    throw new Error('test services were not provided: run tests through vitest with vitest.config.ts, whose globalSetup (test/helpers/global-setup.ts) finds or starts them');
  }
  return services;
}

/** A short random lowercase name, `prefix-xxxxxxxx`, for queues, vhosts, buckets and keys. */
export function uniqueName(prefix: string): string {
  return `${prefix.toLowerCase()}-${randomBytes(5).toString('hex')}`;
}

/**
 * Creates vhost `name` and gives the management URL's user (guest by default) full permissions
 * on it. Tests isolate their queues, exchanges and streams this way.
 */
export async function createTestVhost(managementUrl: string, name: string): Promise<void> {
  const management = new ManagementClient(managementUrl);
  await management.createVhost(name);
  await management.setPermissions(name, decodeURIComponent(new URL(managementUrl).username) || 'guest', { configure: '.*', write: '.*', read: '.*' });
}

/**
 * Deletes vhost `name` and everything in it; a vhost that is already gone is fine. Deleting
 * hundreds of streams takes the broker well past the client's usual 10 s: give it `timeoutMs`.
 */
export async function deleteTestVhost(managementUrl: string, name: string, timeoutMs?: number): Promise<void> {
  await new ManagementClient(managementUrl, { timeoutMs }).deleteVhost(name);
}

/** The AMQP URL of `vhost` on the broker of `amqpUrl`. */
export { amqpUrlForVhost } from '../../services/core/amqp/vhost-url.js';

/**
 * A management API call with the test run's credentials, for what ManagementClient does not
 * offer (connections, consumers, users). `path` is below /api/.
 */
export function managementApi(managementUrl: string, method: string, path: string, body?: unknown): Promise<Response> {
  const base = new URL(managementUrl);
  const authorization = `Basic ${Buffer.from(`${decodeURIComponent(base.username) || 'guest'}:${decodeURIComponent(base.password) || 'guest'}`).toString('base64')}`;
  return fetch(`${base.protocol}//${base.host}/api/${path}`, {
    method,
    headers: { authorization, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

/** {@link managementApi} expecting success (a DELETE of what is already gone counts); the JSON answer, if any. */
export async function managementJson<T>(managementUrl: string, method: string, path: string, body?: unknown): Promise<T> {
  const res = await managementApi(managementUrl, method, path, body);
  if (!res.ok && !(method === 'DELETE' && res.status === 404)) throw new Error(`${method} /api/${path}: HTTP ${res.status} ${await res.text()}`);
  const text = await res.text();
  return (text === '' ? undefined : JSON.parse(text)) as T;
}

/**
 * Creates a broker user with full permissions on `vhost` only, through the management API; the
 * returned `remove` deletes it. Stands in for "another broker's credentials" on a one-broker machine.
 */
export async function createTestUser(managementUrl: string, vhost: string): Promise<{ user: string; password: string; remove: () => Promise<void> }> {
  const call = (method: string, path: string, body?: unknown) => managementJson<void>(managementUrl, method, path, body);
  const user = uniqueName('tmuser');
  const password = `pw-${user}`;
  await call('PUT', `users/${encodeURIComponent(user)}`, { password, tags: '' });
  await call('PUT', `permissions/${encodeURIComponent(vhost)}/${encodeURIComponent(user)}`, { configure: '.*', write: '.*', read: '.*' });
  return { user, password, remove: () => call('DELETE', `users/${encodeURIComponent(user)}`) };
}
