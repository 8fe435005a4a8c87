/**
 * The cluster the round-overhead and producer-impact steps share: a fresh vhost with, per message
 * size, classic queues bound by name to the direct exchange `bench`: `p-ovh-<size>` (round
 * overhead), `p-prod-<size>` and `u-prod-<size>` (producer impact); a coordinator and one worker
 * (the built CLI, local-directory store) protecting `p-*`. Its clean-up (cluster, vhost, Redis
 * keys, temp directory) is registered with the bench's clean-ups before anything is created.
 *
 * Each step has its own protected queues so that no journal grows past one stream segment file
 * (see checkJournalBudget in bench-kit.ts).
 */
import { dirname } from 'node:path';
import { rmSync } from 'node:fs';
import { RoundOutcome } from '../../services/client/index.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { amqpUrlForVhost, createTestVhost, uniqueName } from '../helpers/services.js';
import { forgetNamespace, removeVhost } from './scale.js';
import { WorkerClient } from '../../services/core/grpc/worker-client.js';
import { connectAmqp, log, SIZES, type BenchContext, type MessageSize } from './bench-kit.js';

export const EXCHANGE = 'bench';

export interface ProtectedCluster {
  cluster: TestCluster;
  vhost: string;
  /** AMQP URL of the vhost. */
  url: string;
  namespace: string;
  /** Runs the registered clean-up now; `keepLogs` keeps the cluster's directory (log and store) and prints where. */
  close(keepLogs?: boolean): Promise<void>;
}

/** The protected queue of the round-overhead step. */
export const overheadQueue = (size: MessageSize) => `p-ovh-${size.label.toLowerCase()}`;
/** The producer-impact step's protected queue and its unprotected twin. */
export const producerQueues = (size: MessageSize) => ({ journal: `p-prod-${size.label.toLowerCase()}`, plain: `u-prod-${size.label.toLowerCase()}` });


/**
 * Extra environment of the cluster: a short lease, so a restarted coordinator leads soon. Discovery
 * keeps its default interval (5 s): a pass lists the broker through the management API, and at
 * bench:scale's 1 s it took enough of the two cores to move the capture rates it was meant to leave alone.
 */
export const CLUSTER_ENV = { TIDEMARK_LEASE_TIME: '2s' };

export async function startProtectedCluster(ctx: BenchContext): Promise<ProtectedCluster> {
  const { services } = ctx;
  const vhost = uniqueName('tm-bench');
  const namespace = uniqueName('tmbench');
  const url = amqpUrlForVhost(services.amqpUrl, vhost);
  let cluster: TestCluster | undefined;
  let keep = false;
  const cleanUp = ctx.cleanUps.add(`cluster and vhost ${vhost}`, async () => {
    await cluster?.stop();
    await removeVhost(services.managementUrl, vhost);
    await forgetNamespace(services.redisUrl, namespace);
    if (cluster && !keep) rmSync(dirname(cluster.logFile), { recursive: true, force: true });
    else if (cluster) log(`kept the cluster's log and store in ${dirname(cluster.logFile)}`);
  });
  const close = (keepLogs = false) => ((keep = keepLogs), cleanUp());
  await createTestVhost(services.managementUrl, vhost);
  const connection = await connectAmqp(url);
  try {
    const channel = await connection.createChannel();
    await channel.assertExchange(EXCHANGE, 'direct', { durable: true });
    for (const queue of SIZES.flatMap((s) => [overheadQueue(s), ...Object.values(producerQueues(s))])) {
      await channel.assertQueue(queue, { durable: true });
      await channel.bindQueue(queue, EXCHANGE, queue);
    }
  } finally {
    await connection.close();
  }
  cluster = await startTestCluster({ services, namespace, protect: `${vhost}:p-*`, store: { kind: 'file' }, workers: 1, interval: '0', extraEnv: CLUSTER_ENV });
  const protectedCount = 2 * SIZES.length;
  await cluster.waitForStatus(
    (s) => s.protectedQueues === protectedCount && s.workers.length === 1 && s.workers[0].queues === protectedCount,
    `${protectedCount} queues protected and assigned`,
    60_000,
  );
  log(`cluster up over vhost ${vhost} (log ${cluster.logFile})`);
  return { cluster, vhost, url, namespace, close };
}

/** Errors the worker reports for its captures (none when it is healthy). */
export async function captureErrors(pc: ProtectedCluster): Promise<string[]> {
  const info = (await pc.cluster.client.status()).workers[0];
  if (!info) return ['no worker in the cluster status'];
  const worker = new WorkerClient(info.address, { workerId: info.workerId, tls: pc.cluster.workerTls });
  try {
    return (await worker.status(5_000)).queues.filter((q) => q.error).map((q) => `${q.queue}: ${q.error}`);
  } finally {
    worker.close();
  }
}

/** Runs waited rounds until one commits (at most three tries); its epoch. */
export async function commitRound(cluster: TestCluster): Promise<number> {
  let reason = '';
  for (let attempt = 1; attempt <= 3; attempt += 1) {
    const reply = await cluster.client.checkpoint(true);
    if (reply.outcome === RoundOutcome.ROUND_OUTCOME_COMMITTED) return reply.epoch;
    reason = reply.reason;
  }
  throw new Error(`no round committed in three tries: ${reason}; logs in ${cluster.logFile}`);
}

/** Empties a queue (the source queues only fill up in these measurements; their journals hold the copies). */
export async function purge(url: string, queues: string[]): Promise<void> {
  const connection = await connectAmqp(url);
  try {
    const channel = await connection.createChannel();
    for (const queue of queues) await channel.purgeQueue(queue);
  } finally {
    await connection.close().catch(() => {});
  }
}
