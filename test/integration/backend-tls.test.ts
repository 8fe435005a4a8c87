/**
 * TLS to Redis, RabbitMQ and S3 with the CA and client-certificate settings
 * (docs/SECURITY.md#transport-security). The local services speak plaintext, so each test puts a
 * TLS terminator in front of one (Node's tls server, certificates generated here, client
 * certificates required): a connection only works if Tidemark trusts the CA and presents a
 * certificate the terminator accepts.
 */
import { connect as netConnect } from 'node:net';
import { createServer, type Server } from 'node:tls';
import amqp from 'amqplib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { amqpSocketOptions, configureAmqpTls } from '../../services/core/amqp/amqp-tls.js';
import { ManagementClient } from '../../services/core/amqp/management-client.js';
import { ConfigError, TransientError } from '../../services/core/errors.js';
import { loadBackendTls, type TlsMaterial } from '../../services/core/infrastructure/backend-tls.js';
import { loadConfig } from '../../services/core/infrastructure/config.js';
import { silentLogger } from '../../services/core/infrastructure/log.js';
import { openRedis } from '../../services/core/redis/redis-client.js';
import { S3Store } from '../../services/core/store/s3-store.js';
import { createLocalCa, type IssuedCertificate, type LocalCa } from '../../services/core/tls/index.js';
import { testServices, uniqueName, type TestServices } from '../helpers/services.js';

let services: TestServices;
let ca: LocalCa;
let server: IssuedCertificate;
let client: IssuedCertificate;
let foreign: LocalCa;
const proxies: Server[] = [];

/** A TLS terminator on a free port of localhost forwarding to host:port; client certificates of `ca` required unless told. */
async function tlsProxy(target: string, clientCertificates = true): Promise<number> {
  const url = new URL(target.includes('://') ? target : `tcp://${target}`);
  const proxy = createServer({ cert: server.cert, key: server.key, ca: ca.cert, requestCert: clientCertificates, rejectUnauthorized: clientCertificates }, (socket) => {
    const upstream = netConnect(Number(url.port), url.hostname);
    socket.pipe(upstream).pipe(socket);
    const end = () => {
      socket.destroy();
      upstream.destroy();
    };
    socket.on('error', end);
    upstream.on('error', end);
  });
  proxy.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  proxies.push(proxy);
  return (proxy.address() as { port: number }).port;
}

const material = (who: IssuedCertificate | undefined, trust: LocalCa = ca): TlsMaterial => ({
  ca: Buffer.from(trust.cert),
  cert: who && Buffer.from(who.cert),
  key: who && Buffer.from(who.key),
});

beforeAll(async () => {
  services = await testServices();
  ca = await createLocalCa('Backend test CA');
  foreign = await createLocalCa('Foreign CA');
  server = await ca.issue('localhost', { server: true });
  client = await ca.issue('tidemark');
});

afterAll(() => {
  for (const proxy of proxies) proxy.close();
});

describe('Redis over TLS (rediss://, TIDEMARK_REDIS_TLS_CA/CERT/KEY)', () => {
  it('connects with the CA and a client certificate', async () => {
    const port = await tlsProxy(services.redisUrl);
    const redis = await openRedis(`rediss://localhost:${port}`, silentLogger, undefined, material(client));
    try {
      const key = uniqueName('tls-probe');
      await redis.set(key, 'over tls', 'EX', 60);
      expect(await redis.get(key)).toBe('over tls');
    } finally {
      redis.disconnect();
    }
  });

  it('fails to connect without the client certificate, or trusting another CA, saying why', async () => {
    const port = await tlsProxy(services.redisUrl);
    await expect(openRedis(`rediss://localhost:${port}`, silentLogger, undefined, material(undefined))).rejects.toThrow(TransientError);
    await expect(openRedis(`rediss://localhost:${port}`, silentLogger, undefined, material(client, foreign))).rejects.toThrow(/cannot connect to Redis at rediss:\/\/localhost.*certificate/);
  });

  it('refuses certificates given for a plaintext redis:// URL', async () => {
    await expect(openRedis(services.redisUrl, silentLogger, undefined, material(client))).rejects.toThrow(ConfigError);
  });
});

describe('RabbitMQ over TLS (amqps://, TIDEMARK_AMQP_TLS_CA/CERT/KEY, TIDEMARK_AMQP_EXTERNAL_AUTH)', () => {
  afterEach(() => configureAmqpTls('amqp://localhost', undefined, false));

  it('connects to the protected broker with its CA and a client certificate', async () => {
    const port = await tlsProxy(services.amqpUrl);
    const upstream = new URL(services.amqpUrl);
    const url = `amqps://${upstream.username}:${upstream.password}@localhost:${port}`;
    configureAmqpTls(url, material(client), false);
    const connection = await amqp.connect(url, amqpSocketOptions(url, { timeout: 5_000 }));
    try {
      const channel = await connection.createChannel();
      const { queue } = await channel.assertQueue('', { exclusive: true });
      expect(queue).toMatch(/^amq\.gen-/);
    } finally {
      await connection.close();
    }
  });

  it('without the settings the TLS connection is refused', async () => {
    const port = await tlsProxy(services.amqpUrl);
    const upstream = new URL(services.amqpUrl);
    const url = `amqps://${upstream.username}:${upstream.password}@localhost:${port}`;
    await expect(amqp.connect(url, amqpSocketOptions(url, { timeout: 5_000 }))).rejects.toThrow(/certificate/);
  });

  it('applies only to the protected broker, and asks for EXTERNAL authentication when configured', () => {
    configureAmqpTls('amqps://rabbit.internal:5671', material(client), true);
    const options = amqpSocketOptions('amqps://rabbit.internal/vhost', { timeout: 1 });
    expect(options.ca?.toString()).toBe(ca.cert);
    expect(options.cert?.toString()).toBe(client.cert);
    expect(options.credentials?.mechanism).toBe('EXTERNAL');
    expect(amqpSocketOptions('amqps://other-broker:5671', { timeout: 1 })).toEqual({ timeout: 1 });
    expect(amqpSocketOptions('amqp://rabbit.internal:5671', { timeout: 1 })).toEqual({ timeout: 1 });
  });

  it('EXTERNAL authentication needs a client certificate', () => {
    expect(() => loadBackendTls(loadConfig({ env: { TIDEMARK_AMQP_EXTERNAL_AUTH: 'true' } }))).toThrow(/TIDEMARK_AMQP_TLS_CERT/);
  });
});

describe('the management API over TLS (https://, TIDEMARK_MANAGEMENT_TLS_CA)', () => {
  it('answers through an endpoint whose certificate the configured CA signed, and is refused without that CA', async () => {
    const port = await tlsProxy(services.managementUrl, false);
    const upstream = new URL(services.managementUrl);
    const url = `https://${upstream.username}:${upstream.password}@localhost:${port}`;
    expect((await new ManagementClient(url, { ca: Buffer.from(ca.cert), timeoutMs: 5_000 }).overview()).rabbitmqVersion).toMatch(/^\d+\./);
    await expect(new ManagementClient(url, { timeoutMs: 5_000 }).overview()).rejects.toThrow(/at https:\/\/localhost:\d+\/api\/ failed: .*CERT/);
    await expect(new ManagementClient(url, { ca: Buffer.from(foreign.cert), timeoutMs: 5_000 }).overview()).rejects.toThrow(/failed/);
  });
});

describe('S3 over TLS (an https:// endpoint, TIDEMARK_S3_TLS_CA)', () => {
  it('stores and reads objects through an endpoint whose certificate the configured CA signed', async () => {
    // S3 authenticates requests by signature, not certificate: this terminator asks for none.
    const port = await tlsProxy(services.s3.endpoint, false);
    const options = { bucket: uniqueName('tls'), endpoint: `https://localhost:${port}`, accessKey: services.s3.accessKey, secretKey: services.s3.secretKey, region: services.s3.region, retries: 0 };
    const store = new S3Store({ ...options, ca: Buffer.from(ca.cert) });
    try {
      await store.ensureBucket();
      await store.put('probe', Buffer.from('over tls'));
      expect((await store.get('probe')).toString()).toBe('over tls');
    } finally {
      await store.close();
    }
    const untrusting = new S3Store(options);
    try {
      await expect(untrusting.ensureBucket()).rejects.toThrow(/certificate/);
    } finally {
      await untrusting.close();
    }
  });
});
