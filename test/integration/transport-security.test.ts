/**
 * Transport security of a real cluster (docs/SECURITY.md#transport-security), with certificates
 * generated for the test run (helpers/tls.ts):
 * - with mutual TLS, rounds commit and the CLI with the right CA works; a plaintext CLI, or one
 *   trusting another CA, fails saying why;
 * - a worker with a certificate of another CA is refused by the coordinator; a caller of a
 *   worker without the coordinator's certificate (a worker's, a client's, none) is refused by
 *   the worker, whatever it asks;
 * - a forged `Assign{leader_token: huge, queues: []}` changes nothing, even in plaintext
 *   development mode: captures keep running and the real leader is not deposed.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, loadGrpcTls } from '../../services/core/index.js';
import { WorkerClient } from '../../services/core/grpc/worker-client.js';
import { FailedPreconditionError } from '../../services/core/errors.js';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import { Decision } from '../../services/gen/tidemark/v1/worker.js';
import amqp from 'amqplib';
import { declareBoundQueues, readQueue } from '../helpers/broker.js';
import { runCli, spawnCli } from '../helpers/cli.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { logEntries } from '../helpers/log-lines.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';
import { foreignCertificate } from '../helpers/tls.js';

const QUEUES = [
  { name: 'ts-a', type: 'classic' },
  { name: 'ts-b', type: 'quorum' },
];

let services: TestServices;
/** The vhost of the newest cluster. */
let vhost: string;
const vhosts: string[] = [];
const scratch = mkdtempSync(join(tmpdir(), 'tidemark-tls-it-'));

beforeAll(async () => {
  services = await testServices();
});

afterAll(async () => {
  for (const vhost of vhosts) await deleteTestVhost(services.managementUrl, vhost);
  rmSync(scratch, { recursive: true, force: true });
});

async function protectedCluster(tls: boolean): Promise<TestCluster> {
  vhost = uniqueName('tm-tls');
  vhosts.push(vhost);
  await createTestVhost(services.managementUrl, vhost);
  await declareBoundQueues(services.amqpUrl, vhost, 'events', QUEUES);
  const cluster = await startTestCluster({
    services,
    namespace: uniqueName('tmtls'),
    protect: `${vhost}:ts-*`,
    store: { kind: 'file' },
    workers: 1,
    tls,
    extraEnv: { TIDEMARK_DISCOVERY_INTERVAL: '1s' },
  });
  await cluster.waitForStatus((s) => s.leader && s.workers.length === 1 && s.workers[0].reachable && s.workers[0].queues === QUEUES.length, 'the worker capturing both queues');
  return cluster;
}

/** What the worker captures, asked of the worker with the coordinator's own certificate material. */
async function captured(cluster: TestCluster, address: string): Promise<string[]> {
  const tls = cluster.tlsDir ? loadGrpcTls(loadConfig({ env: { TIDEMARK_TLS_DIR: cluster.tlsDir } }), 'coordinator') : undefined;
  const client = new WorkerClient(address, { workerId: 'worker-1', tls });
  try {
    return (await client.status(5_000)).queues.map((q) => q.queue).sort();
  } finally {
    client.close();
  }
}

describe('mutual TLS between coordinator, workers and the CLI (the default)', () => {
  let cluster: TestCluster;
  let workerAddress: string;

  beforeAll(async () => {
    cluster = await protectedCluster(true);
    workerAddress = (await cluster.client.status()).workers[0].address;
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('rounds commit and restores stream over mutual TLS, driven by the CLI with the generated CA and client certificate', async () => {
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createConfirmChannel();
    for (let i = 0; i < 5; i += 1) for (const q of QUEUES) channel.publish('events', q.name, Buffer.from(`${q.name}-${i}`), { messageId: `${q.name}-${i}` });
    await channel.waitForConfirms();
    await connection.close();
    const round = await runCli(['checkpoint', '--wait', '--json'], cluster.env);
    expect(round.code, round.stderr).toBe(0);
    expect(JSON.parse(round.stdout)).toMatchObject({ outcome: 'committed' });
    const status = await runCli(['status', '--json'], cluster.env);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ leader: true, workers: [{ reachable: true }] });
    // The worker's Restore stream, coordinator to worker, over mutual TLS.
    const restore = await runCli(['restore', '--checkpoint', 'latest', '--prefix', 'back.'], cluster.env);
    expect(restore.code, restore.stderr).toBe(0);
    for (const q of QUEUES) {
      const messages = await readQueue(services.amqpUrl, vhost, `back.${q.name}`, q.type, 5);
      expect(messages.map((m) => m.properties.messageId)).toEqual([0, 1, 2, 3, 4].map((i) => `${q.name}-${i}`));
    }
  });

  it('a plaintext CLI fails clearly against the TLS coordinator', async () => {
    const result = await runCli(['status'], { ...cluster.env, TIDEMARK_TLS: 'off' });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/in plaintext \(TIDEMARK_TLS=off here\).*needs TLS here too/);
  });

  it('a CLI trusting another CA refuses the coordinator, naming the setting to check', async () => {
    const foreign = await foreignCertificate('tidemark-client');
    const caFile = join(scratch, 'foreign-ca-cert.pem');
    writeFileSync(caFile, foreign.cert);
    const result = await runCli(['status', '--tls-ca', caFile], cluster.env);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/over TLS: .*certificate.*TIDEMARK_TLS_CA/);
  });

  it('the worker refuses every caller but the coordinator, and a refused Assign changes nothing', async () => {
    const before = await captured(cluster, workerAddress);
    expect(before).toEqual(QUEUES.map((q) => q.name).sort());
    const dir = cluster.tlsDir!;
    const as = (role: 'worker' | 'client') => {
      const tls = loadGrpcTls(loadConfig({ env: { TIDEMARK_TLS_DIR: dir } }), role);
      if (!tls.enabled) throw new Error('TLS is off');
      return tls;
    };
    // A worker's certificate presenting itself as the coordinator, and a CLI client's.
    for (const role of ['worker', 'client'] as const) {
      const forger = new WorkerClient(workerAddress, { workerId: 'worker-1', tls: as(role) });
      await expect(forger.assign({ leaderToken: 2 ** 40, generation: 2 ** 40, queues: [] }, 5_000)).rejects.toThrow(/serves only callers with a certificate naming tidemark-coordinator/);
      forger.close();
    }
    // No certificate, and plaintext: the handshake itself fails.
    for (const tls of [{ ...as('client'), cert: undefined, key: undefined }, undefined]) {
      const forger = new WorkerClient(workerAddress, { workerId: 'worker-1', tls });
      await expect(forger.assign({ leaderToken: 2 ** 40, generation: 2 ** 40, queues: [] }, 5_000)).rejects.toThrow(/worker worker-1 at/);
      forger.close();
    }
    expect(await captured(cluster, workerAddress)).toEqual(before);
    expect((await cluster.client.checkpoint(true)).outcome).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
  });

  it('a worker whose certificate another CA signed is refused by the coordinator', async () => {
    const foreign = await foreignCertificate('tidemark-worker');
    const cert = join(scratch, 'foreign-worker.pem');
    const key = join(scratch, 'foreign-worker-key.pem');
    writeFileSync(cert, foreign.cert);
    writeFileSync(key, foreign.key, { mode: 0o600 });
    const intruder = spawnCli(['worker', '--listen', '127.0.0.1:0'], { ...cluster.env, TIDEMARK_ID: 'foreign-worker', TIDEMARK_TLS_CERT: cert, TIDEMARK_TLS_KEY: key });
    try {
      const status = await cluster.waitForStatus(
        (s) => s.workers.some((w) => w.workerId === 'foreign-worker' && !w.reachable && w.error !== ''),
        'the coordinator to find the foreign worker unreachable',
      );
      const refused = status.workers.find((w) => w.workerId === 'foreign-worker')!;
      expect(refused.error).toMatch(/certificate/i);
      expect(refused.queues).toBe(0);
    } finally {
      intruder.child.kill('SIGTERM');
      await intruder.result;
    }
  });
});

describe('leader token confirmation (plaintext development mode, where a forger can reach a worker)', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await protectedCluster(false);
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('a forged Assign{leader_token: huge, queues: []} is refused: captures keep running and the leader is not deposed', async () => {
    const status = await cluster.client.status();
    const address = status.workers[0].address;
    const before = await captured(cluster, address);
    expect(before).toEqual(QUEUES.map((q) => q.name).sort());
    const forger = new WorkerClient(address, { workerId: 'worker-1' });
    const worker = await forger.status(5_000);
    const refusal = await forger.assign({ leaderToken: 2 ** 40, generation: 2 ** 40, queues: [] }, 5_000).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(refusal).toBeInstanceOf(FailedPreconditionError);
    expect((refusal as Error).message).toMatch(/leader token 1099511627776 was never issued.*nothing was changed/);
    // The same for the other calls that carry a token.
    await expect(forger.decide({ leaderToken: 2 ** 40, epoch: 1, roundId: 'forged', decision: Decision.DECISION_COMMIT, counted: [] }, 5_000)).rejects.toThrow(/never issued/);
    const after = await forger.status(5_000);
    forger.close();
    expect(after.leaderToken, 'the worker did not adopt the forged token').toBe(worker.leaderToken);
    expect(after.generation).toBe(worker.generation);
    expect(await captured(cluster, address)).toEqual(before);
    const leader = await cluster.client.status();
    expect(leader.leader).toBe(true);
    expect(leader.leaderToken).toBe(status.leaderToken);
    const round = await cluster.client.checkpoint(true);
    expect(round.outcome, round.reason).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    expect((await cluster.client.getCheckpoint(String(round.epoch))).queues.every((q) => !q.outsideCut)).toBe(true);
  });

  it('a plaintext worker told to listen on every interface does, and logs the risk', async () => {
    const exposed = spawnCli(['worker', '--listen', '0.0.0.0:0', '--advertise', '127.0.0.1:1'], { ...cluster.env, TIDEMARK_ID: 'exposed-worker' });
    try {
      await cluster.waitForStatus((s) => s.workers.some((w) => w.workerId === 'exposed-worker'), 'the exposed worker to join');
    } finally {
      exposed.child.kill('SIGTERM');
    }
    const { stderr } = await exposed.result;
    const warning = logEntries(stderr).find((e) => e.msg.startsWith('listening on a network address without protection: anyone who can reach it can call it'));
    expect(warning, stderr).toMatchObject({ level: 'warn', worker: 'exposed-worker', service: 'worker', listen: '0.0.0.0:0', reason: 'TLS is off (TIDEMARK_TLS=off)' });
  });
});
