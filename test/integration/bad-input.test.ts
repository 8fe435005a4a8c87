/**
 * Bad input over gRPC, against a real cluster (a leader and a standby coordinator, one worker):
 * bytes that are not the request message, unknown methods and services, and well-formed requests
 * that make no sense each get a fitting status and a message saying what was wrong and what to
 * do — and change nothing: no round starts, no leader token moves, nothing is declared or
 * published.
 */
import * as grpc from '@grpc/grpc-js';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TidemarkClient, type RestoreEvent, type RestoreRequest, type StatusReply } from '../../services/client/index.js';
import { coordinatorChannel, workerChannel } from '../../services/core/grpc/tls.js';
import { WorkerClient } from '../../services/core/grpc/worker-client.js';
import { ManagementClient } from '../../services/core/amqp/management-client.js';
import { ConfigError, NotFoundError, NotLeaderError, TidemarkError } from '../../services/core/errors.js';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import { Decision, type WorkerStatus } from '../../services/gen/tidemark/v1/worker.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';

const QUEUE = 'in-orders';
const COORDINATOR = '/tidemark.v1.CoordinatorService/';
const WORKER = '/tidemark.v1.WorkerService/';
const identity = (b: Buffer) => b;

let services: TestServices;
let vhost: string;
let cluster: TestCluster;
let leader: TidemarkClient;
let standby: TidemarkClient;
let leaderAddress: string;
let workerAddress: string;
let worker: WorkerClient;
let epoch: number;

/** Sends raw bytes as the request of a unary method; resolves with the status, or the reply bytes. */
/** A raw client of the worker (with the coordinator's certificate) or of the coordinator (a CLI's). */
function rawClient(address: string): grpc.Client {
  const channel = address === workerAddress ? workerChannel(cluster.workerTls) : coordinatorChannel(cluster.clientTls);
  return new grpc.Client(address, channel.credentials, channel.options);
}

function unaryRaw(address: string, path: string, bytes: Buffer): Promise<grpc.ServiceError | Buffer> {
  const client = rawClient(address);
  return new Promise<grpc.ServiceError | Buffer>((resolve) => {
    client.makeUnaryRequest(path, identity, identity, bytes, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, reply) => resolve(err ?? reply!));
  }).finally(() => client.close());
}

/** Sends raw bytes as the request of a server-streaming method; resolves with the final status. */
function streamRaw(address: string, path: string, bytes: Buffer): Promise<{ status: grpc.ServiceError | undefined; messages: number }> {
  const client = rawClient(address);
  return new Promise<{ status: grpc.ServiceError | undefined; messages: number }>((resolve) => {
    const call = client.makeServerStreamRequest(path, identity, identity, bytes, new grpc.Metadata(), { deadline: Date.now() + 10_000 });
    let messages = 0;
    call.on('data', () => (messages += 1));
    call.on('error', (status: grpc.ServiceError) => resolve({ status, messages }));
    call.on('end', () => resolve({ status: undefined, messages }));
  }).finally(() => client.close());
}

function failed(result: grpc.ServiceError | Buffer): grpc.ServiceError {
  expect(result, 'the call should have failed').not.toBeInstanceOf(Buffer);
  return result as grpc.ServiceError;
}

/** The rejection of a call made through a Tidemark client, with its gRPC code. */
async function rejection(pending: Promise<unknown>): Promise<{ err: TidemarkError; code: grpc.status | undefined }> {
  const err = await pending.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'the call should have failed').toBeInstanceOf(TidemarkError);
  return { err: err as TidemarkError, code: ((err as Error).cause as grpc.ServiceError | undefined)?.code };
}

/** Runs a restore to its end; the events seen and the error it ended with, if any. */
async function tryRestore(client: TidemarkClient, request: Partial<RestoreRequest>): Promise<{ events: RestoreEvent[]; err: TidemarkError | undefined; code: grpc.status | undefined }> {
  const events: RestoreEvent[] = [];
  try {
    for await (const event of client.restore(request)) events.push(event);
    return { events, err: undefined, code: undefined };
  } catch (e) {
    expect(e).toBeInstanceOf(TidemarkError);
    return { events, err: e as TidemarkError, code: ((e as Error).cause as grpc.ServiceError | undefined)?.code };
  }
}

/** What must not change when a request is refused. */
interface Snapshot {
  rounds: Pick<StatusReply, 'roundsCommitted' | 'roundsAborted' | 'latestCheckpoint'> & { lastRound: number | undefined };
  checkpoints: number[];
  /** Not the assignment generation: every discovery pass raises it. */
  worker: Pick<WorkerStatus, 'leaderToken' | 'lastPreparedEpoch'>;
  queues: string[];
}

async function snapshot(): Promise<Snapshot> {
  const status = await leader.status();
  const w = await worker.status(10_000);
  const queues = await new ManagementClient(services.managementUrl).listQueues(vhost);
  return {
    rounds: { roundsCommitted: status.roundsCommitted, roundsAborted: status.roundsAborted, latestCheckpoint: status.latestCheckpoint, lastRound: status.lastRound?.epoch },
    checkpoints: (await leader.listCheckpoints()).map((c) => c.epoch),
    worker: { leaderToken: w.leaderToken, lastPreparedEpoch: w.lastPreparedEpoch },
    // Tidemark's own journals are left out: only application queues and restore targets count.
    queues: queues.map((q) => q.name).filter((name) => !name.startsWith(`${cluster.env.TIDEMARK_NAMESPACE}.`)).sort(),
  };
}

/** A PrepareRequest whose epoch is above 2^53: valid protobuf, but not a number Tidemark can hold. */
function prepareWithHugeEpoch(): Buffer {
  const writer = new BinaryWriter();
  writer.uint32(8).uint64(1); // leader_token = 1
  writer.uint32(16).uint64('1152921504606846976'); // epoch = 2^60
  writer.uint32(34).string('round-x'); // round_id
  return Buffer.from(writer.finish());
}

describe('bad input over gRPC', () => {
  beforeAll(async () => {
    services = await testServices();
    vhost = uniqueName('tm-bad-input');
    await createTestVhost(services.managementUrl, vhost);
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createConfirmChannel();
    await channel.assertExchange('app', 'direct', { durable: true });
    await channel.assertQueue(QUEUE, { durable: true });
    await channel.bindQueue(QUEUE, 'app', QUEUE);
    cluster = await startTestCluster({
      services,
      namespace: uniqueName('tmb'),
      protect: `${vhost}:in-*`,
      store: { kind: 'file' },
      workers: 1,
      coordinators: 2,
      extraEnv: { TIDEMARK_LEASE_TIME: '3s', TIDEMARK_DISCOVERY_INTERVAL: '1s' },
    });
    // Either coordinator may win the lease: find out which one leads.
    // Each client talks to its own coordinator only: the standby's refusals are under test.
    const clients = Object.values(cluster.coordinatorAddresses).map((address) => new TidemarkClient(address, { deadlineMs: 30_000, tls: cluster.clientTls, token: cluster.token, followLeader: false }));
    const until = Date.now() + 60_000;
    let leading: StatusReply | undefined;
    while (Date.now() < until && !leading) {
      const statuses = await Promise.all(clients.map((c) => c.status().catch(() => undefined)));
      const i = statuses.findIndex((s) => s?.leader && s.protectedQueues === 1 && s.workers.reduce((n, w) => n + w.queues, 0) === 1);
      if (i >= 0 && statuses[1 - i]?.leader === false) {
        leading = statuses[i];
        leader = clients[i];
        standby = clients[1 - i];
      } else await new Promise((r) => setTimeout(r, 250));
    }
    if (!leading) throw new Error(`no leader with its queue assigned and a standby; logs in ${cluster.logFile}`);
    leaderAddress = leader.address;
    workerAddress = leading.workers[0].address;
    worker = new WorkerClient(workerAddress, { workerId: leading.workers[0].workerId, tls: cluster.workerTls });

    for (let i = 0; i < 5; i += 1) channel.publish('app', QUEUE, Buffer.from(`m${i}`), { persistent: true });
    await channel.waitForConfirms();
    await connection.close();
    const reply = await leader.checkpoint(true);
    expect(reply.outcome, reply.reason).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    epoch = reply.epoch;
  });

  afterAll(async () => {
    worker?.close();
    leader?.close();
    standby?.close();
    await cluster?.stop();
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
  });

  it('bytes that are not the request message are INVALID_ARGUMENT naming the method, on every method of both services, and change nothing', async () => {
    const before = await snapshot();
    const garbage = Buffer.from([0x0f]); // wire type 7 does not exist
    const unary = [
      [leaderAddress, `${COORDINATOR}Checkpoint`],
      [leaderAddress, `${COORDINATOR}ListCheckpoints`],
      [leaderAddress, `${COORDINATOR}GetCheckpoint`],
      [leaderAddress, `${COORDINATOR}Status`],
      [workerAddress, `${WORKER}Assign`],
      [workerAddress, `${WORKER}Prepare`],
      [workerAddress, `${WORKER}Decide`],
      [workerAddress, `${WORKER}Status`],
    ];
    for (const [address, path] of unary) {
      const status = failed(await unaryRaw(address, path, garbage));
      expect(status.code, path).toBe(grpc.status.INVALID_ARGUMENT);
      expect(status.details).toBe(
        `malformed request: the bytes sent to ${path} do not decode as its request message (cant skip wire type 7); nothing was done. ` +
          'Send the request encoded from proto/tidemark/v1 of the same Tidemark version as the server',
      );
    }
    for (const [address, path] of [
      [leaderAddress, `${COORDINATOR}Restore`],
      [workerAddress, `${WORKER}Restore`],
    ]) {
      const { status, messages } = await streamRaw(address, path, Buffer.from([0x0a, 0x10, 0x41])); // a length past the end
      expect(status?.code, path).toBe(grpc.status.INVALID_ARGUMENT);
      expect(status?.details).toContain(`the bytes sent to ${path} do not decode as its request message (premature EOF)`);
      expect(messages).toBe(0);
    }
    const huge = failed(await unaryRaw(workerAddress, `${WORKER}Prepare`, prepareWithHugeEpoch()));
    expect(huge.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(huge.details).toContain('(Value is larger than Number.MAX_SAFE_INTEGER)');
    expect(await snapshot()).toEqual(before);
  });

  it('an unknown method of a known service, and an unknown service, are UNIMPLEMENTED naming the method', async () => {
    for (const [address, path] of [
      [leaderAddress, `${COORDINATOR}DropEverything`],
      [leaderAddress, '/tidemark.v1.Nope/Status'],
      [workerAddress, `${WORKER}Purge`],
      [workerAddress, `${COORDINATOR}Status`],
    ]) {
      const status = failed(await unaryRaw(address, path, Buffer.alloc(0)));
      expect(status.code, path).toBe(grpc.status.UNIMPLEMENTED);
      expect(status.details).toBe(`The server does not implement the method ${path}`);
    }
  });

  it.each<[string, Partial<RestoreRequest>, grpc.status, typeof TidemarkError, string]>([
    ['no checkpoint and no time', {}, grpc.status.INVALID_ARGUMENT, ConfigError, 'a restore needs a checkpoint: an epoch number or "latest" (--checkpoint), or a time (--at); nothing was restored'],
    ['an empty checkpoint id', { checkpoint: '  ' }, grpc.status.INVALID_ARGUMENT, ConfigError, 'a restore needs a checkpoint'],
    ['both a checkpoint and a time', { checkpoint: 'latest', at: '2026-01-01T00:00:00Z' }, grpc.status.INVALID_ARGUMENT, ConfigError, 'not both'],
    ['a checkpoint id that is not one', { checkpoint: 'last' }, grpc.status.INVALID_ARGUMENT, ConfigError, '"last" is not a checkpoint id: use an epoch number or "latest"'],
    ['a checkpoint id past 2^53', { checkpoint: '99999999999999999999999' }, grpc.status.INVALID_ARGUMENT, ConfigError, 'is not a checkpoint id'],
    ['an unknown checkpoint id', { checkpoint: '424242' }, grpc.status.NOT_FOUND, NotFoundError, 'checkpoint 424242 does not exist'],
    ['a time that is not one', { at: 'yesterday' }, grpc.status.INVALID_ARGUMENT, ConfigError, '--at "yesterday" is not a time'],
    ['a time before every checkpoint', { at: '2001-01-01T00:00:00Z' }, grpc.status.NOT_FOUND, NotFoundError, 'no checkpoint was committed at or before 2001-01-01T00:00:00.000Z'],
    ['a glob that matches no queue', { checkpoint: 'latest', queues: ['payments-*'] }, grpc.status.INVALID_ARGUMENT, ConfigError, 'matches payments-*'],
    ['an empty queue selector', { checkpoint: 'latest', queues: ['vhost:'] }, grpc.status.INVALID_ARGUMENT, ConfigError, 'queue selector "vhost:" is empty'],
    ['an unknown bindings mode', { checkpoint: 'latest', bindings: 'sometimes' }, grpc.status.INVALID_ARGUMENT, ConfigError, '--bindings must be auto, all or none'],
    ['a map of an unselected queue', { checkpoint: 'latest', map: [{ from: 'nope', to: 'x' }] }, grpc.status.INVALID_ARGUMENT, ConfigError, '--map names nope'],
    ['a target that is not an AMQP URL', { checkpoint: 'latest', targetAmqpUrl: 'guest:s3cret@rabbit' }, grpc.status.INVALID_ARGUMENT, ConfigError, '--target-amqp must be an amqp:// or amqps:// URL'],
  ])('a restore with %s is refused before anything is planned or published', async (_what, request, code, errorClass, message) => {
    const before = await snapshot();
    const result = await tryRestore(leader, { prefix: 'bad.', ...request });
    expect(result.code).toBe(code);
    expect(result.err).toBeInstanceOf(errorClass);
    expect(result.err?.message).toContain(message);
    expect(result.err?.message).not.toContain('s3cret');
    expect(result.events).toEqual([]);
    expect(await snapshot()).toEqual(before);
  });

  it('GetCheckpoint with an id that is not one is INVALID_ARGUMENT, with an unknown one NOT_FOUND', async () => {
    const bad = await rejection(leader.getCheckpoint('last'));
    expect(bad.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(bad.err.message).toContain('"last" is not a checkpoint id');
    const unknown = await rejection(leader.getCheckpoint('424242'));
    expect(unknown.code).toBe(grpc.status.NOT_FOUND);
    expect(unknown.err.message).toContain('checkpoint 424242 does not exist');
    expect((await leader.getCheckpoint(String(epoch))).epoch).toBe(epoch);
  });

  it('a restore sent to the standby is FAILED_PRECONDITION pointing at the leader; a dry run there still plans', async () => {
    const before = await snapshot();
    const refused = await tryRestore(standby, { checkpoint: String(epoch), prefix: 'bad.' });
    expect(refused.code, refused.err?.message).toBe(grpc.status.FAILED_PRECONDITION);
    expect(refused.err).toBeInstanceOf(NotLeaderError);
    expect((refused.err as NotLeaderError).leaderAddress).toBe(leaderAddress);
    expect(refused.err?.message).toMatch(
      /^coordinator coordinator(-2)? is a standby, so it did not take the restore; nothing was restored; the leader is coordinator(-2)? at 127\.0\.0\.1:\d+\. Send the request to the leader \(see "tidemark status"\)$/,
    );
    expect(refused.events).toEqual([]);
    const dryRun = await tryRestore(standby, { checkpoint: String(epoch), prefix: 'bad.', dryRun: true });
    expect(dryRun.err).toBeUndefined();
    expect(dryRun.events.map((e) => e.event?.$case)).toEqual(['plan', 'done']);
    expect(await snapshot()).toEqual(before);
  });

  it('worker requests with missing or nonsense fields are INVALID_ARGUMENT and move no leader token', async () => {
    const before = await snapshot();
    // A higher token than the worker has seen: had it been taken, the real leader would be locked out.
    const token = before.worker.leaderToken + 100;
    const unspecified = await rejection(worker.decide({ leaderToken: token, epoch, decision: Decision.DECISION_UNSPECIFIED, roundId: 'r', counted: [] }, 10_000));
    expect(unspecified.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(unspecified.err.message).toBe('decision must be DECISION_COMMIT or DECISION_ABORT');
    const noEpoch = await rejection(worker.prepare({ leaderToken: token, epoch: 0, queues: [], roundId: 'r' }, 10_000));
    expect(noEpoch.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(noEpoch.err.message).toBe('epoch is required');
    const noToken = await rejection(worker.assign({ leaderToken: 0, generation: 1, queues: [] }, 10_000));
    expect(noToken.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(noToken.err.message).toBe('leader_token is required');
    const noTarget = await (async () => {
      try {
        const task = { leaderToken: token, restoreId: 'r-bad', checkpoint: epoch, targetAmqpUrl: '', exchanges: [], originHeaders: true, confirmWindow: 0 };
        const queues = [{ source: undefined, targetVhost: vhost, targetName: '', startOffset: 0, cutOffset: 1, messages: 1, bodyBytes: 0, segments: [], recreate: true, bind: false, append: false, resumeCount: 0, resumeAfterOffset: 0, resumeFromTail: false, rateLimit: 0, started: false, possiblyAcked: 0, assignment: '' }];
        for await (const progress of worker.restore({ ...task, queues })) void progress;
        return undefined;
      } catch (err) {
        return err as TidemarkError;
      }
    })();
    expect(noTarget).toBeInstanceOf(ConfigError);
    expect(noTarget?.message).toBe('every queue of a restore task needs a source and a target name');
    expect(await snapshot()).toEqual(before);
  });
});
