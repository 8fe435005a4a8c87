/**
 * The worker's side of recovery, driven directly over gRPC against a real worker process:
 * - a standby takes over within the lease time, with a higher token;
 * - a deposed leader's token is refused, also by a worker restarted since (the floor comes from
 *   Redis, not from the worker's memory);
 * - PREPARE is idempotent: repeats of a round get the same vote and the same staged partition;
 *   a round already decided gets NO;
 * - a worker holding a YES vote asks for the decision: an aborted record, or a record that is
 *   gone, lets it forget the round; an undecided one keeps it waiting;
 * - a leader whose token is below one a worker has seen (Redis lost its counter) takes a new
 *   lease above it instead of being refused for ever.
 */
import amqp from 'amqplib';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkerClient } from '../../services/core/grpc/worker-client.js';
import { StaleLeaderError } from '../../services/core/errors.js';
import { FENCE_EPOCH_HEADER, FENCE_NAMESPACE_HEADER, FENCE_ROUND_HEADER, fenceExchangeName, redisKeys } from '../../services/core/format/names.js';
import { TidemarkClient } from '../../services/client/index.js';
import { RoundOutcome, type StatusReply } from '../../services/gen/tidemark/v1/admin.js';
import { Decision, Vote, type PrepareRequest } from '../../services/gen/tidemark/v1/worker.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';

const QUEUES = ['r1', 'r2'];
const LEASE_MS = 1_000;

let services: TestServices;
let vhost: string;
let namespace: string;
let cluster: TestCluster;
let redis: Redis;

/** Publishes a fence of a made-up round, as a leader would, so a worker can prepare it. */
async function publishFence(epoch: number, roundId: string): Promise<void> {
  const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
  const channel = await connection.createConfirmChannel();
  channel.publish(fenceExchangeName(namespace), '', Buffer.from('{}'), {
    headers: { [FENCE_EPOCH_HEADER]: epoch, [FENCE_ROUND_HEADER]: roundId, [FENCE_NAMESPACE_HEADER]: namespace },
  });
  await channel.waitForConfirms();
  await connection.close();
}

/** The status of whichever coordinator leads, once `ready` holds for it. */
async function leaderStatus(ready: (s: StatusReply) => boolean, what: string): Promise<StatusReply> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    for (const address of Object.values(cluster.coordinatorAddresses)) {
      const client = new TidemarkClient(address, { deadlineMs: 2_000, tls: cluster.clientTls, token: cluster.token });
      const status = await client.status().catch(() => undefined);
      client.close();
      if (status?.leader && ready(status)) return status;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; logs in ${cluster.logFile}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** An admin client of whichever coordinator leads now. */
async function leaderClient(): Promise<TidemarkClient> {
  const status = await leaderStatus(() => true, 'a leader');
  const address = Object.entries(cluster.coordinatorAddresses).find(([name]) => name === status.coordinatorId)![1];
  return new TidemarkClient(address, { tls: cluster.clientTls, token: cluster.token });
}

async function worker(): Promise<{ client: WorkerClient; token: number }> {
  const status = await leaderStatus((s) => s.workers.length === 1 && s.workers[0].queues === QUEUES.length, 'the worker capturing both queues');
  return { client: new WorkerClient(status.workers[0].address, { workerId: 'worker-1', tls: cluster.workerTls }), token: status.leaderToken };
}

function prepareRequest(token: number, epoch: number, roundId: string): PrepareRequest {
  return { leaderToken: token, epoch, roundId, queues: QUEUES.map((queue) => ({ vhost, queue, census: undefined })) };
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; logs in ${cluster.logFile}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('recovery paths on the worker', () => {
  beforeAll(async () => {
    services = await testServices();
    vhost = uniqueName('tm-recovery');
    namespace = uniqueName('tmr');
    redis = new Redis(services.redisUrl);
    await createTestVhost(services.managementUrl, vhost);
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createChannel();
    for (const q of QUEUES) await channel.assertQueue(q, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await connection.close();
    cluster = await startTestCluster({
      services,
      namespace,
      protect: `${vhost}:r*`,
      store: { kind: 'file' },
      workers: 1,
      coordinators: 2,
      extraEnv: { TIDEMARK_LEASE_TIME: `${LEASE_MS}ms`, TIDEMARK_DISCOVERY_INTERVAL: '1s' },
    });
  });

  afterAll(async () => {
    await cluster?.stop();
    redis?.disconnect();
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
  });

  it('refuses a deposed leader, also after the worker restarts', async () => {
    const first = await leaderStatus((s) => s.workers.length === 1 && s.workers[0].queues === QUEUES.length, 'a leader');
    const leader = first.coordinatorId;
    // The leader dies; the standby takes over with a higher token and assigns the worker.
    const killedAt = Date.now();
    await cluster.kill(leader);
    await leaderStatus((s) => s.coordinatorId !== leader, 'the standby to take over');
    // The lease expires one lease time after its last renewal; the standby polls every third of it.
    const takeoverMs = Date.now() - killedAt;
    expect(takeoverMs, 'standby takeover time').toBeLessThan(2 * LEASE_MS + 1_000);
    const second = await leaderStatus((s) => s.coordinatorId !== leader && s.workers[0]?.queues === QUEUES.length, 'the new leader to assign the worker');
    expect(second.leaderToken).toBeGreaterThan(first.leaderToken);
    cluster.restart(leader);
    const client = new WorkerClient(second.workers[0].address, { workerId: 'worker-1', tls: cluster.workerTls });
    await expect(client.prepare(prepareRequest(first.leaderToken, 1_000, 'stale'), 5_000)).rejects.toBeInstanceOf(StaleLeaderError);
    client.close();

    // A restarted worker has no memory of tokens, yet still refuses the deposed leader, even
    // before any leader has reached it (both coordinators are paused, so none can).
    cluster.pause(second.coordinatorId);
    cluster.pause(leader);
    try {
      await cluster.kill('worker-1');
      cluster.restart('worker-1');
      let address = client.address;
      await waitUntil('the restarted worker to register', async () => {
        const info = await redis.hget(redisKeys(namespace).workerInfo, 'worker-1');
        address = info ? (JSON.parse(info) as { address: string }).address : address;
        return address !== client.address;
      });
      const restarted = new WorkerClient(address, { workerId: 'worker-1', tls: cluster.workerTls });
      expect((await restarted.status(5_000)).leaderToken, 'no leader has reached the restarted worker yet').toBe(second.leaderToken);
      await expect(restarted.prepare(prepareRequest(first.leaderToken, 1_000, 'stale'), 5_000)).rejects.toThrow(/leader token \d+ is stale/);
      restarted.close();
    } finally {
      cluster.resume(second.coordinatorId);
      cluster.resume(leader);
    }
  });

  it('gives a repeated PREPARE the same vote and staged partition, and refuses a decided round', async () => {
    const { client, token } = await worker();
    const roundId = uniqueName('round');
    await publishFence(5_000, roundId);
    const request = prepareRequest(token, 5_000, roundId);
    const [first, concurrent] = await Promise.all([client.prepare(request, 10_000), client.prepare(request, 10_000)]);
    const again = await client.prepare(request, 10_000);
    expect(first.vote, first.reason).toBe(Vote.VOTE_YES);
    for (const reply of [concurrent, again]) {
      expect(reply.vote).toBe(Vote.VOTE_YES);
      expect(reply.partitionSha256).toBe(first.partitionSha256);
      expect(reply.queues).toEqual(first.queues);
    }
    expect((await client.status(5_000)).undecidedEpochs).toEqual([5_000]);
    await client.decide({ leaderToken: token, epoch: 5_000, roundId, decision: Decision.DECISION_ABORT, counted: [] }, 5_000);
    const late = await client.prepare(request, 10_000);
    expect(late.vote).toBe(Vote.VOTE_NO);
    expect(late.reason).toMatch(/already decided \(aborted\)/);
    expect((await client.status(5_000)).undecidedEpochs).toEqual([]);
    client.close();
  });

  it('asks for the decisions it did not hear: aborted or forgotten rounds are dropped, undecided ones kept', async () => {
    const { client, token } = await worker();
    const decisions = redisKeys(namespace).decisions;
    const rounds = { aborted: uniqueName('round'), gone: uniqueName('round'), open: uniqueName('round') };
    const epochs = { aborted: 6_001, gone: 6_002, open: 6_003 };
    const record = (epoch: number, roundId: string, state: string) =>
      JSON.stringify({ epoch, roundId, state, reason: '', leaderToken: token, atMs: Date.now() });
    await redis.hset(decisions, String(epochs.aborted), record(epochs.aborted, rounds.aborted, 'started'));
    await redis.hset(decisions, String(epochs.open), record(epochs.open, rounds.open, 'started'));
    for (const key of ['aborted', 'gone', 'open'] as const) {
      await publishFence(epochs[key], rounds[key]);
      expect((await client.prepare(prepareRequest(token, epochs[key], rounds[key]), 10_000)).vote).toBe(Vote.VOTE_YES);
    }
    expect((await client.status(5_000)).undecidedEpochs.sort()).toEqual([epochs.aborted, epochs.gone, epochs.open]);
    // The leader decides ABORT but the worker never hears it.
    await redis.hset(decisions, String(epochs.aborted), record(epochs.aborted, rounds.aborted, 'aborted'));
    await waitUntil('the worker to drop the aborted and the forgotten round', async () => {
      const undecided = (await client.status(5_000)).undecidedEpochs;
      return undecided.length === 1 && undecided[0] === epochs.open;
    });
    // Still undecided after several more inquiries.
    await new Promise((r) => setTimeout(r, 3 * LEASE_MS));
    expect((await client.status(5_000)).undecidedEpochs).toEqual([epochs.open]);
    await redis.hdel(decisions, String(epochs.aborted), String(epochs.open));
    client.close();
  });

  it('a leader outranked by a token a worker has seen takes a new lease above it', async () => {
    // What Redis losing its counter can lead to: the worker has seen a token the leader lacks.
    // A worker adopts only the token of the lease held at the time, so a lease with token + 5
    // holds for that call; then Redis loses it, and its counter falls back.
    const { client, token } = await worker();
    const keys = redisKeys(namespace);
    const issued = await redis.get(keys.leaderToken);
    await redis.multi().set(keys.leader, `${token + 5}:lost-leader:0`, 'PX', 5_000).set(keys.leaderToken, String(token + 5)).exec();
    await client.decide({ leaderToken: token + 5, epoch: 7_000, roundId: 'outranking', decision: Decision.DECISION_ABORT, counted: [] }, 5_000);
    await redis.multi().del(keys.leader).set(keys.leaderToken, issued!).exec();
    client.close();
    const status = await leaderStatus((s) => s.leaderToken > token + 5 && s.workers[0]?.queues === QUEUES.length, 'a leader with a token above the one the worker saw');
    expect(status.leaderToken).toBeGreaterThan(token + 5);
    const leader = await leaderClient();
    expect((await leader.checkpoint(true)).outcome, 'the workers listen to the new lease').toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    leader.close();
  });
});
