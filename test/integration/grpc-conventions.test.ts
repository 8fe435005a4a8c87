/**
 * gRPC conventions (issue 15, docs/API.md) against a real cluster: two coordinators (leader and
 * standby) and a worker, with mutual TLS and tokens, on a private Redis this test can stop.
 *
 * - grpc.health.v1 answers SERVING on every process, on its TLS port without a token (a worker's
 *   only to the coordinator's certificate) and on its plaintext healthListen port; the leader
 *   name only on the leader; stopping Redis turns them NOT_SERVING within seconds, and restarting
 *   it SERVING again;
 * - server reflection lists the admin API and resolves a method's file without the protos, and
 *   does not open the admin API to a caller without a token;
 * - the CLI and the typed client pointed at the standby, or at a list with a dead address first,
 *   take a checkpoint through the leader, and `tidemark health` exits 0 or 1 as a probe needs.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TidemarkClient } from '../../services/client/index.js';
import { UnauthenticatedError } from '../../services/core/errors.js';
import { checkHealth } from '../../services/core/health/index.js';
import { coordinatorChannel, workerChannel, type GrpcTls } from '../../services/core/index.js';
import { RoundOutcome, type StatusReply } from '../../services/gen/tidemark/v1/admin.js';
import { runCli } from '../helpers/cli.js';
import { freePort, startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { eventually } from '../helpers/eventually.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';

const QUEUE = 'orders';
const COORDINATOR_SERVICE = 'tidemark.v1.CoordinatorService';
const LEADER = `${COORDINATOR_SERVICE}/leader`;

let services: TestServices;
let vhost: string;
let cluster: TestCluster;
let redisPort: number;
let redis: ChildProcess | undefined;
/** Plaintext health ports by process name. */
const healthPorts: Record<string, number> = {};
let leaderAddress: string;
let standbyAddress: string;
let workerAddress: string;

/** A Redis of this test's own: stopping it disturbs nobody else. */
async function startRedis(): Promise<void> {
  redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  await eventually(`redis-server on port ${redisPort}`, () => listening(redisPort), { timeoutMs: 10_000, intervalMs: 50 });
}

async function stopRedis(): Promise<void> {
  const child = redis;
  redis = undefined;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

const plaintext = { credentials: grpc.credentials.createInsecure() };
const overTls = (tls: GrpcTls, channel = coordinatorChannel) => {
  const c = channel(tls);
  return { credentials: c.credentials, channelOptions: c.options };
};
const healthAt = (name: string, service = '') => checkHealth(`127.0.0.1:${healthPorts[name]}`, { ...plaintext, service, deadlineMs: 3_000 });

async function statusOf(address: string): Promise<StatusReply> {
  const client = new TidemarkClient(address, { tls: cluster.clientTls, token: cluster.token, deadlineMs: 10_000 });
  try {
    return await client.status();
  } finally {
    client.close();
  }
}

describe('gRPC conventions: health, reflection, finding the leader', () => {
  beforeAll(async () => {
    services = await testServices();
    vhost = uniqueName('tm-grpc');
    await createTestVhost(services.managementUrl, vhost);
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue(QUEUE, { durable: true });
    for (let i = 0; i < 3; i += 1) channel.sendToQueue(QUEUE, Buffer.from(`m${i}`), { persistent: true });
    await channel.waitForConfirms();
    await connection.close();
    redisPort = await freePort();
    await startRedis();
    for (const name of ['coordinator', 'coordinator-2', 'worker-1']) healthPorts[name] = await freePort();
    cluster = await startTestCluster({
      services: { ...services, redisUrl: `redis://127.0.0.1:${redisPort}` },
      namespace: uniqueName('tmg'),
      protect: `${vhost}:*`,
      store: { kind: 'file' },
      workers: 1,
      coordinators: 2,
      extraEnv: { TIDEMARK_LEASE_TIME: '3s', TIDEMARK_DISCOVERY_INTERVAL: '1s' },
      processEnv: Object.fromEntries(Object.entries(healthPorts).map(([name, port]) => [name, { TIDEMARK_HEALTH_LISTEN: `127.0.0.1:${port}` }])),
    });
    // Either coordinator may win the lease; the standby must know where the leader is.
    const addresses = Object.values(cluster.coordinatorAddresses);
    await eventually(
      `a leader with its queue assigned, and a standby naming it (logs in ${cluster.logFile})`,
      async () => {
        const statuses = await Promise.all(addresses.map(statusOf));
        const leading = statuses.findIndex((s) => s.leader && s.workers.reduce((n, w) => n + w.queues, 0) === 1);
        if (leading < 0 || statuses[1 - leading].leaderAddress !== addresses[leading]) return undefined;
        leaderAddress = addresses[leading];
        standbyAddress = addresses[1 - leading];
        workerAddress = statuses[leading].workers[0].address;
        return true;
      },
      { timeoutMs: 60_000 },
    );
  });

  afterAll(async () => {
    await cluster?.stop();
    await stopRedis();
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
  });

  it('answers SERVING on every TLS port without a token, the leader name only on the leader, and on the plaintext health ports', async () => {
    for (const address of [leaderAddress, standbyAddress]) {
      expect(await checkHealth(address, { ...overTls(cluster.clientTls), service: '' })).toBe('SERVING');
      expect(await checkHealth(address, { ...overTls(cluster.clientTls), service: COORDINATOR_SERVICE })).toBe('SERVING');
    }
    expect(await checkHealth(leaderAddress, { ...overTls(cluster.clientTls), service: LEADER })).toBe('SERVING');
    expect(await checkHealth(standbyAddress, { ...overTls(cluster.clientTls), service: LEADER })).toBe('NOT_SERVING');
    // A worker's port serves only the coordinator's certificate, health included.
    expect(await checkHealth(workerAddress, { ...overTls(cluster.workerTls, workerChannel), service: 'tidemark.v1.WorkerService' })).toBe('SERVING');
    await expect(checkHealth(workerAddress, overTls(cluster.clientTls, workerChannel))).rejects.toThrow(/serves only callers with a certificate naming tidemark-coordinator/);
    for (const name of Object.keys(healthPorts)) expect(await healthAt(name)).toBe('SERVING');
    await expect(healthAt('coordinator', 'tidemark.v1.NoSuchService')).rejects.toThrow(/Health status unknown for service tidemark.v1.NoSuchService/);
  });

  it('serves nothing but health on the plaintext port', async () => {
    const client = new TidemarkClient(`127.0.0.1:${healthPorts.coordinator}`, { token: cluster.token, deadlineMs: 5_000 });
    try {
      const err = await client.status().then(() => undefined, (e: Error) => e);
      expect((err?.cause as grpc.ServiceError | undefined)?.code).toBe(grpc.status.UNIMPLEMENTED);
    } finally {
      client.close();
    }
  });

  it('reflection lists the admin API and health and resolves a method to its file, without a token; the admin API still wants one', async () => {
    const reflectionProto = join(dirname(dirname(createRequire(import.meta.url).resolve('@grpc/reflection'))), 'proto', 'grpc', 'reflection', 'v1', 'reflection.proto');
    const loaded = grpc.loadPackageDefinition(protoLoader.loadSync(reflectionProto, { keepCase: true })) as unknown as {
      grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } };
    };
    const channel = coordinatorChannel(cluster.clientTls);
    const reflection = new loaded.grpc.reflection.v1.ServerReflection(standbyAddress, channel.credentials, channel.options);
    try {
      const ask = (request: Record<string, string>) =>
        new Promise<Record<string, any>>((resolve, reject) => {
          const call = (reflection as unknown as { ServerReflectionInfo(): grpc.ClientDuplexStream<unknown, Record<string, any>> }).ServerReflectionInfo();
          call.once('data', (reply) => {
            resolve(reply);
            call.end();
          });
          call.once('error', reject);
          call.write(request);
        });
      const listed = await ask({ list_services: '' });
      const names = (listed.list_services_response.service as Array<{ name: string }>).map((s) => s.name);
      expect(names.sort()).toEqual(['grpc.health.v1.Health', COORDINATOR_SERVICE]);
      // protobufjs merges the package's files into one descriptor, tidemark_v1.proto.
      const file = await ask({ file_containing_symbol: `${COORDINATOR_SERVICE}.Checkpoint` });
      const descriptors = (file.file_descriptor_response.file_descriptor_proto as Buffer[]).map((b) => Buffer.from(b).toString('latin1'));
      const admin = descriptors.find((d) => d.includes('CoordinatorService'));
      expect(admin, JSON.stringify(descriptors.map((d) => d.slice(0, 40)))).toBeDefined();
      expect(admin).toContain('tidemark_v1.proto');
      expect(admin).toContain('CheckpointRequest');
      expect(admin).toContain('StatusReply');
    } finally {
      reflection.close();
    }
    const anonymous = new TidemarkClient(leaderAddress, { tls: cluster.clientTls, deadlineMs: 10_000 });
    try {
      await expect(anonymous.checkpoint(false)).rejects.toBeInstanceOf(UnauthenticatedError);
    } finally {
      anonymous.close();
    }
  });

  it('a standby refuses a checkpoint naming the leader; the CLI and the client pointed at it, or at a dead address first, take it through the leader', async () => {
    const direct = await statusOf(standbyAddress);
    expect(direct).toMatchObject({ leader: false, leaderAddress });
    // The standby's own answer to a leader-only call: what a client without redirection sees.
    const refusal = await new Promise<grpc.ServiceError>((resolve) => {
      const channel = coordinatorChannel(cluster.clientTls);
      const raw = new grpc.Client(standbyAddress, channel.credentials, channel.options);
      const metadata = new grpc.Metadata();
      metadata.set('authorization', `Bearer ${cluster.token}`);
      raw.makeUnaryRequest(`/${COORDINATOR_SERVICE}/Checkpoint`, () => Buffer.alloc(0), (b: Buffer) => b, {}, metadata, (err) => {
        raw.close();
        resolve(err!);
      });
    });
    expect(refusal.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(refusal.metadata.get('tidemark-error')).toEqual(['NotLeaderError']);
    expect(refusal.metadata.get('tidemark-leader-address')).toEqual([leaderAddress]);
    expect(refusal.details).toContain(`at ${leaderAddress}`);

    const dead = `127.0.0.1:${await freePort()}`;
    for (const coordinators of [standbyAddress, `${dead},${standbyAddress}`]) {
      const result = await runCli(['checkpoint', '--wait', '--json'], { ...cluster.env, TIDEMARK_COORDINATOR: coordinators });
      expect(result.code, result.stderr).toBe(0);
      expect(JSON.parse(result.stdout)).toMatchObject({ outcome: 'committed' });
    }
    const client = new TidemarkClient(`${dead},${standbyAddress}`, { tls: cluster.clientTls, token: cluster.token, deadlineMs: 60_000 });
    try {
      const reply = await client.checkpoint(true);
      expect(reply.outcome).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
      expect(client.currentAddress).toBe(leaderAddress);
      const listed = await client.listCheckpoints();
      expect(listed.map((c) => c.epoch)).toContain(reply.epoch);
    } finally {
      client.close();
    }
    const status = await runCli(['status', '--json'], { ...cluster.env, TIDEMARK_COORDINATOR: standbyAddress });
    expect(JSON.parse(status.stdout)).toMatchObject({ leader: false, leaderAddress });
  });

  it('tidemark health exits 0 when SERVING and 1, saying why, when not', async () => {
    const ok = await runCli(['health', '--address', `127.0.0.1:${healthPorts['worker-1']}`, '--plaintext', '--json'], cluster.env);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual({ serving: true, service: '', results: [{ address: `127.0.0.1:${healthPorts['worker-1']}`, status: 'SERVING', error: null }] });
    // Over TLS, both coordinators of the list, as configured.
    const both = await runCli(['health'], { ...cluster.env, TIDEMARK_COORDINATOR: `${leaderAddress},${standbyAddress}` });
    expect(both.code, both.stderr).toBe(0);
    expect(both.stdout).toBe(`${leaderAddress}: SERVING\n${standbyAddress}: SERVING\n`);
    const standbyName = Object.entries(cluster.coordinatorAddresses).find(([, a]) => a === standbyAddress)![0];
    const notLeader = await runCli(['health', '--address', `127.0.0.1:${healthPorts[standbyName]}`, '--plaintext', '--service', LEADER], cluster.env);
    expect(notLeader.code).toBe(1);
    expect(notLeader.stderr).toContain('is NOT_SERVING tidemark.v1.CoordinatorService/leader');
    const nobody = await runCli(['health', '--address', `127.0.0.1:${await freePort()}`, '--plaintext'], cluster.env);
    expect(nobody.code).toBe(1);
    expect(nobody.stdout).toMatch(/UNREACHABLE/);
  });

  it('turns NOT_SERVING within seconds of Redis stopping, and SERVING again once it is back', async () => {
    await stopRedis();
    const stoppedAt = Date.now();
    for (const name of Object.keys(healthPorts)) {
      await eventually(`${name} NOT_SERVING after Redis stopped`, async () => (await healthAt(name)) === 'NOT_SERVING', { timeoutMs: 10_000, intervalMs: 100 });
    }
    expect(Date.now() - stoppedAt).toBeLessThan(10_000);
    await startRedis();
    for (const name of Object.keys(healthPorts)) {
      await eventually(`${name} SERVING after Redis came back`, async () => (await healthAt(name)) === 'SERVING', { timeoutMs: 30_000, intervalMs: 200 });
    }
  });
});
