/**
 * Transport security without a cluster (docs/SECURITY.md#transport-security): real TLS between
 * an in-process gRPC server and client, with certificates generated here by the local CA module;
 * the configuration of TLS, the listen-address rule, and the leader token confirmation's logic.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TidemarkClient, transportSecurityProblem } from '../../services/client/index.js';
import { ConfigError, FailedPreconditionError, StaleLeaderError, TransientError } from '../../services/core/errors.js';
import { chooseListen, isLoopback } from '../../services/core/grpc/listen-address.js';
import { startServer } from '../../services/core/grpc/server.js';
import { type CertificateIdentity, certificateIdentity, type GrpcTls, identityHasName, identityOfCertificate, expiryWarning, loadGrpcTls, onlyPeerNamed, serverCredentials } from '../../services/core/grpc/tls.js';
import { WorkerClient } from '../../services/core/grpc/worker-client.js';
import { loadConfig } from '../../services/core/infrastructure/config.js';
import { redisKeys } from '../../services/core/format/names.js';
import { createLocalCa, ensureLocalCertificates, type IssuedCertificate, type LocalCa } from '../../services/core/tls/index.js';
import { CoordinatorServiceService, StatusReply } from '../../services/gen/tidemark/v1/admin.js';
import { WorkerServiceService, WorkerStatus } from '../../services/gen/tidemark/v1/worker.js';
import { LeaderConfirmation } from '../../services/worker/leader-confirmation.js';
import { run } from '../../services/cli/program.js';

const names = { coordinatorName: 'tidemark-coordinator', workerName: 'tidemark-worker' };
let ca: LocalCa;
let foreignCa: LocalCa;
const issued: Record<string, IssuedCertificate> = {};
const dir = mkdtempSync(join(tmpdir(), 'tidemark-tls-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type EnabledTls = Extract<GrpcTls, { enabled: true }>;

function material(cert: IssuedCertificate | undefined, trust: LocalCa = ca): EnabledTls {
  return { enabled: true, ca: Buffer.from(trust.cert), cert: cert && Buffer.from(cert.cert), key: cert && Buffer.from(cert.key), ...names };
}

beforeAll(async () => {
  ca = await createLocalCa();
  foreignCa = await createLocalCa('Foreign CA');
  issued.coordinator = await ca.issue('tidemark-coordinator', { server: true });
  issued.worker = await ca.issue('tidemark-worker', { server: true });
  issued.client = await ca.issue('ops-alice');
  issued.foreignCoordinator = await foreignCa.issue('tidemark-coordinator', { server: true });
});

describe('the admin API over TLS: certificateIdentity(call)', () => {
  let server: grpc.Server;
  let port: number;
  let seen: CertificateIdentity | undefined | 'not called';
  let plain: { server: grpc.Server; port: number };

  beforeAll(async () => {
    const status = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<StatusReply>) => {
      seen = certificateIdentity(call);
      callback(null, StatusReply.fromPartial({ coordinatorId: 'c1' }));
    };
    ({ server, port } = await startServer([[CoordinatorServiceService, { status }]], '127.0.0.1:0', {
      credentials: serverCredentials(material(issued.coordinator), 'optional'),
    }));
    plain = await startServer([[CoordinatorServiceService, { status }]], '127.0.0.1:0');
  });
  afterAll(() => {
    server?.forceShutdown();
    plain?.server.forceShutdown();
  });

  async function statusWith(tls: GrpcTls | undefined, at = port): Promise<StatusReply> {
    seen = 'not called';
    const client = new TidemarkClient(`127.0.0.1:${at}`, { deadlineMs: 5_000, tls });
    try {
      return await client.status();
    } finally {
      client.close();
    }
  }

  it('gives the CN and DNS names of a client certificate the CA signed', async () => {
    expect((await statusWith(material(issued.client))).coordinatorId).toBe('c1');
    expect(seen).toMatchObject({ commonName: 'ops-alice', dnsNames: ['ops-alice'], uris: [] });
    expect((seen as CertificateIdentity).fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });

  it('is undefined for a caller without a certificate, who is still served (callers may authenticate otherwise)', async () => {
    expect((await statusWith(material(undefined))).coordinatorId).toBe('c1');
    expect(seen).toBeUndefined();
  });

  it('is undefined for a certificate another CA signed', async () => {
    const foreignClient = await foreignCa.issue('ops-alice');
    expect((await statusWith({ ...material(foreignClient), ca: Buffer.from(ca.cert) })).coordinatorId).toBe('c1');
    expect(seen).toBeUndefined();
  });

  it('is undefined on a plaintext call', async () => {
    expect((await statusWith(undefined, plain.port)).coordinatorId).toBe('c1');
    expect(seen).toBeUndefined();
  });

  it('a plaintext client to the TLS server fails saying TLS is needed', async () => {
    const err = await statusWith(undefined).then(() => undefined, (e: unknown) => e as Error);
    expect(err).toBeInstanceOf(TransientError);
    expect(err!.message).toMatch(/in plaintext \(TIDEMARK_TLS=off here\).*needs TLS here too.*TIDEMARK_TLS_CA/);
    expect(seen).toBe('not called');
  });

  it('a TLS client to a plaintext server fails saying the server speaks plaintext', async () => {
    const err = await statusWith(material(undefined), plain.port).then(() => undefined, (e: unknown) => e as Error);
    expect(err?.message).toMatch(/over TLS: it answers in plaintext/);
  });

  it('a client refuses a server certificate from a CA it does not trust, naming the setting to check', async () => {
    const err = await statusWith(material(undefined, foreignCa)).then(() => undefined, (e: unknown) => e as Error);
    expect(err?.message).toMatch(/over TLS: .*certificate.*TIDEMARK_TLS_CA/);
    expect(seen).toBe('not called');
  });

  it('a client refuses a server whose certificate does not carry the coordinator name', async () => {
    const err = await statusWith({ ...material(undefined), coordinatorName: 'coordinator.example.com' }).then(() => undefined, (e: unknown) => e as Error);
    expect(err?.message).toMatch(/naming tidemark-coordinator.*not one naming coordinator\.example\.com/);
    expect(seen).toBe('not called');
  });
});

describe('a worker over mutual TLS serves only the coordinator', () => {
  let server: grpc.Server;
  let port: number;
  let calls = 0;

  beforeAll(async () => {
    const status = (_call: unknown, callback: grpc.sendUnaryData<WorkerStatus>) => {
      calls += 1;
      callback(null, WorkerStatus.fromPartial({ workerId: 'w1' }));
    };
    const tls = material(issued.worker);
    ({ server, port } = await startServer([[WorkerServiceService, { status }]], '127.0.0.1:0', {
      credentials: serverCredentials(tls, 'required'),
      refuse: onlyPeerNamed(tls, 'tidemark-coordinator', 'worker w1'),
    }));
  });
  afterAll(() => server?.forceShutdown());

  async function workerStatus(tls: GrpcTls | undefined): Promise<string> {
    const before = calls;
    const client = new WorkerClient(`127.0.0.1:${port}`, { workerId: 'w1', tls });
    try {
      const reply = await client.status(5_000);
      return reply.workerId;
    } catch (err) {
      expect(calls, 'a refused call never reaches the handler').toBe(before);
      throw err;
    } finally {
      client.close();
    }
  }

  it('answers the coordinator', async () => {
    expect(await workerStatus(material(issued.coordinator))).toBe('w1');
  });

  it('refuses a worker certificate presenting itself as the coordinator: PERMISSION_DENIED naming both', async () => {
    await expect(workerStatus(material(issued.worker))).rejects.toThrow(/serves only callers with a certificate naming tidemark-coordinator; this caller presented a certificate naming tidemark-worker/);
  });

  it('refuses a coordinator certificate signed by another CA', async () => {
    await expect(workerStatus({ ...material(issued.foreignCoordinator), ca: Buffer.from(ca.cert) })).rejects.toThrow(/worker w1 at 127\.0\.0\.1/);
  });

  it('refuses a caller without a certificate, and a plaintext one', async () => {
    await expect(workerStatus(material(undefined))).rejects.toThrow(/worker w1 at/);
    await expect(workerStatus(undefined)).rejects.toThrow(/worker w1 at/);
  });

  it('the coordinator refuses a worker whose certificate does not carry the worker name', async () => {
    const client = new WorkerClient(`127.0.0.1:${port}`, { workerId: 'w1', tls: { ...material(issued.coordinator), workerName: 'other-worker' } });
    await expect(client.status(5_000)).rejects.toThrow(/not one naming other-worker/);
    client.close();
  });
});

describe('TLS settings', () => {
  it('is on by default, with role names and the local CA directory', () => {
    expect(loadConfig({ env: {} })).toMatchObject({ tls: true, tlsDir: '.tidemark/tls', tlsCoordinatorName: 'tidemark-coordinator', tlsWorkerName: 'tidemark-worker' });
    expect(loadConfig({ env: { TIDEMARK_TLS: 'off' } }).tls).toBe(false);
    expect(
      loadConfig({ env: { TIDEMARK_TLS_CA: '/a', TIDEMARK_TLS_CERT: '/b', TIDEMARK_TLS_KEY: '/c', TIDEMARK_TLS_DIR: '/d', TIDEMARK_TLS_COORDINATOR_NAME: 'c', TIDEMARK_TLS_WORKER_NAME: 'w' } }),
    ).toMatchObject({ tlsCa: '/a', tlsCert: '/b', tlsKey: '/c', tlsDir: '/d', tlsCoordinatorName: 'c', tlsWorkerName: 'w' });
  });

  it('a service without certificates refuses to start, saying how to get them or how to go plaintext', () => {
    const config = loadConfig({ env: { TIDEMARK_TLS_DIR: join(dir, 'empty') } });
    expect(() => loadGrpcTls(config, 'worker')).toThrow(ConfigError);
    expect(() => loadGrpcTls(config, 'worker')).toThrow(/TLS is on \(the default\).*TIDEMARK_TLS_CA.*tidemark tls init.*TIDEMARK_TLS=off/);
    expect(loadGrpcTls(loadConfig({ env: { TIDEMARK_TLS: 'off' } }), 'worker')).toEqual({ enabled: false });
  });

  it('a client without a CA file trusts the system roots and presents no certificate', () => {
    expect(loadGrpcTls(loadConfig({ env: { TIDEMARK_TLS_DIR: join(dir, 'empty') } }), 'client')).toMatchObject({ enabled: true, ca: undefined, cert: undefined });
  });

  it('takes each role\'s files from the TLS directory, and explicit files over them', async () => {
    const tlsDir = join(dir, 'local');
    expect(await ensureLocalCertificates(tlsDir)).toBe(true);
    expect(await ensureLocalCertificates(tlsDir), 'a complete set is kept').toBe(false);
    const worker = loadGrpcTls(loadConfig({ env: { TIDEMARK_TLS_DIR: tlsDir } }), 'worker');
    expect(worker.enabled && worker.cert?.toString()).toContain('BEGIN CERTIFICATE');
    const own = join(dir, 'own.pem');
    const ownKey = join(dir, 'own-key.pem');
    writeFileSync(own, issued.client.cert);
    writeFileSync(ownKey, issued.client.key);
    const client = loadGrpcTls(loadConfig({ env: { TIDEMARK_TLS_DIR: tlsDir, TIDEMARK_TLS_CERT: own, TIDEMARK_TLS_KEY: ownKey } }), 'client');
    expect(client.enabled && client.cert?.toString()).toBe(issued.client.cert);
    expect(() => loadGrpcTls(loadConfig({ env: { TIDEMARK_TLS_DIR: tlsDir, TIDEMARK_TLS_KEY: join(dir, 'missing.pem') } }), 'client')).toThrow(/cannot read the private key .*missing\.pem \(TIDEMARK_TLS_KEY\)/);
  });

  it('tidemark tls init generates the local CA once, and keeps it after', async () => {
    const tlsDir = join(dir, 'init');
    const tidemark = async (argv: string[]) => {
      let stdout = '';
      let stderr = '';
      const code = await run(argv, { env: {}, stdout: { write: (t: string) => (stdout += t) }, stderr: { write: (t: string) => (stderr += t) } });
      return { code, stdout, stderr };
    };
    const first = await tidemark(['tls', 'init', '--dir', tlsDir]);
    expect(first).toMatchObject({ code: 0, stderr: '' });
    expect(first.stdout).toMatch(/generated a local CA and certificates in .*init \(owner-only files\)/);
    const ca = statSync(join(tlsDir, 'ca.pem')).mtimeMs;
    expect((await tidemark(['tls', 'init', '--dir', tlsDir])).stdout).toMatch(/already holds a local CA and certificates: kept/);
    expect(statSync(join(tlsDir, 'ca.pem')).mtimeMs).toBe(ca);
    const worker = loadGrpcTls(loadConfig({ env: { TIDEMARK_TLS_DIR: tlsDir } }), 'worker');
    expect(worker.enabled && identityOfCertificate(new X509Certificate(worker.cert!).raw)).toMatchObject({ dnsNames: ['tidemark-worker', 'localhost'] });
  });

  it('a service refuses to start with a key not its certificate\'s, an expired certificate, or one without its role\'s name', async () => {
    const files = (name: string, cert: IssuedCertificate, key = cert.key) => {
      writeFileSync(join(dir, `${name}.pem`), cert.cert);
      writeFileSync(join(dir, `${name}-key.pem`), key);
      writeFileSync(join(dir, 'ca-for-checks.pem'), ca.cert);
      return loadConfig({ env: { TIDEMARK_TLS_CA: join(dir, 'ca-for-checks.pem'), TIDEMARK_TLS_CERT: join(dir, `${name}.pem`), TIDEMARK_TLS_KEY: join(dir, `${name}-key.pem`) } });
    };
    expect(loadGrpcTls(files('good', issued.worker), 'worker')).toMatchObject({ enabled: true, certificateExpiry: expect.any(Date) });
    expect(() => loadGrpcTls(files('swapped', issued.worker, issued.coordinator.key), 'worker')).toThrow(/private key \(TIDEMARK_TLS_KEY\) is not the key of the certificate .*swapped\.pem/);
    const expired = await ca.issue('tidemark-worker', { server: true, validDays: 0 });
    expect(() => loadGrpcTls(files('expired', expired), 'worker')).toThrow(/expired\.pem \(TIDEMARK_TLS_CERT\) expired on \d{4}-.*Issue a new one/);
    expect(() => loadGrpcTls(files('wrong-role', issued.worker), 'coordinator')).toThrow(
      /the coordinator's certificate .*wrong-role\.pem carries the names tidemark-worker, localhost, not tidemark-coordinator: its peers would refuse it.*TIDEMARK_TLS_COORDINATOR_NAME/,
    );
    // A client's certificate may carry any name.
    expect(loadGrpcTls(files('client-any', issued.worker), 'client').enabled).toBe(true);
  });

  it('warns of a certificate that expires within 30 days', async () => {
    const soon = { ...material(issued.worker), certificateExpiry: new Date(Date.now() + 5 * 86_400_000 + 60_000) };
    expect(expiryWarning(soon)).toMatch(/expires on \d{4}-.*in 5 day\(s\): issue a new one and restart before then/);
    expect(expiryWarning({ ...soon, certificateExpiry: new Date(Date.now() + 31 * 86_400_000) })).toBeUndefined();
    expect(expiryWarning({ enabled: false })).toBeUndefined();
  });

  it('writes the local CA owner-only: directory 0700, every file 0600', async () => {
    const tlsDir = join(dir, 'modes');
    await ensureLocalCertificates(tlsDir);
    expect(statSync(tlsDir).mode & 0o777).toBe(0o700);
    for (const file of ['ca.pem', 'coordinator.pem', 'coordinator-key.pem', 'worker.pem', 'worker-key.pem', 'client.pem', 'client-key.pem']) {
      expect(statSync(join(tlsDir, file)).mode & 0o777, file).toBe(0o600);
    }
  });

  it('matches a role name among DNS names, or the CN only when there are none', () => {
    expect(identityHasName({ commonName: 'x', dnsNames: ['tidemark-worker'], uris: [], fingerprint256: '' }, 'TIDEMARK-WORKER')).toBe(true);
    expect(identityHasName({ commonName: 'tidemark-worker', dnsNames: ['other'], uris: [], fingerprint256: '' }, 'tidemark-worker')).toBe(false);
    expect(identityHasName({ commonName: 'tidemark-worker', dnsNames: [], uris: [], fingerprint256: '' }, 'tidemark-worker')).toBe(true);
    expect(identityHasName({ commonName: undefined, dnsNames: ['*.example.com'], uris: [], fingerprint256: '' }, 'a.example.com')).toBe(false);
  });

  it('explains a TLS failure only when TLS is its cause', () => {
    expect(transportSecurityProblem('h:1', true, 'No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: ')).toBeUndefined();
    expect(transportSecurityProblem('h:1', false, 'No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1.')).toBeUndefined();
  });
});

describe('the default listen address', () => {
  it('is loopback unless the calls are protected, and any interface when they are', () => {
    expect(chooseListen({ port: 7700, protectedCalls: false, service: 's', why: 'w' })).toEqual({ address: '127.0.0.1:7700' });
    expect(chooseListen({ port: 7700, protectedCalls: true, service: 's', why: 'w' })).toEqual({ address: '0.0.0.0:7700' });
    // A worker: protected by mutual TLS, still on loopback unless told (it advertises that address).
    expect(chooseListen({ port: 0, protectedCalls: true, exposeByDefault: false, service: 's', why: 'w' })).toEqual({ address: '127.0.0.1:0' });
  });

  it('honours an explicit exposed address without protection, with a warning saying the risk', () => {
    const choice = chooseListen({ explicit: '0.0.0.0:7700', port: 7700, protectedCalls: false, service: 'coordinator admin API', why: 'TLS is off (TIDEMARK_TLS=off)' });
    expect(choice.address).toBe('0.0.0.0:7700');
    expect(choice.warning).toMatch(/coordinator admin API listens on 0\.0\.0\.0:7700, reachable from the network, although TLS is off.*anyone who can reach/);
    expect(chooseListen({ explicit: '127.0.0.1:9', port: 7700, protectedCalls: false, service: 's', why: 'w' }).warning).toBeUndefined();
    expect(chooseListen({ explicit: '10.0.0.5:9', port: 7700, protectedCalls: true, service: 's', why: 'w' }).warning).toBeUndefined();
  });

  it('knows loopback addresses', () => {
    for (const a of ['127.0.0.1:1', '127.3.2.1:1', 'localhost:1', '[::1]:1']) expect(isLoopback(a), a).toBe(true);
    for (const a of ['0.0.0.0:1', '[::]:1', '10.0.0.1:1', 'example.com:1']) expect(isLoopback(a), a).toBe(false);
  });
});

describe('leader token confirmation (the logic; test/integration/transport-security.test.ts runs it on Redis)', () => {
  const keys = redisKeys('tm');
  const redis = (values: Record<string, string>) => ({ get: async (key: string) => values[key] ?? null });

  it('adopts a new token only when it is the current lease\'s', async () => {
    await expect(new LeaderConfirmation(redis({ [keys.leader]: '8:c1:ab', [keys.leaderToken]: '8' }), 'tm').confirm(8, 7)).resolves.toBeUndefined();
  });

  it('needs no look-up for a token at or below the newest seen', async () => {
    const nothing = { get: async () => { throw new Error('must not be asked'); } };
    await expect(new LeaderConfirmation(nothing, 'tm').confirm(7, 7)).resolves.toBeUndefined();
  });

  it('refuses a token Redis never issued as a forgery', async () => {
    const err = await new LeaderConfirmation(redis({ [keys.leader]: '8:c1:ab', [keys.leaderToken]: '8' }), 'tm').confirm(2 ** 40, 7).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect((err as Error).message).toMatch(/leader token 1099511627776 was never issued \(the newest lease token in Redis is 8\).*nothing was changed/);
    await expect(new LeaderConfirmation(redis({ [keys.leaderToken]: '8' }), 'tm').confirm(9, 7)).rejects.toThrow(FailedPreconditionError);
  });

  it('refuses a token a newer lease has replaced as stale, and waits when no lease is held', async () => {
    await expect(new LeaderConfirmation(redis({ [keys.leader]: '9:c2:cd', [keys.leaderToken]: '9' }), 'tm').confirm(8, 7)).rejects.toThrow(StaleLeaderError);
    await expect(new LeaderConfirmation(redis({ [keys.leaderToken]: '8' }), 'tm').confirm(8, 7)).rejects.toThrow(TransientError);
  });

  it('a Redis failure changes nothing and may be retried', async () => {
    const down = { get: async () => { throw new Error('connect ECONNREFUSED'); } };
    await expect(new LeaderConfirmation(down, 'tm').confirm(8, 7)).rejects.toThrow(TransientError);
  });
});
