/**
 * Round latency at 100 and 1,000 queues against a floor measured in the same run, on the same
 * cluster, broker, Redis and store.
 *
 * The rounds are bench:scale's (scale.ts runConfiguration): a fresh vhost of classic queues, a
 * coordinator and one worker, a light confirmed producer, R waited rounds back to back. The
 * latency is the leader's own round duration (status().lastRound: fence, prepare, decision,
 * manifest) of the committed rounds; the admin call's duration, which adds any wait behind a
 * discovery pass, is printed beside it.
 *
 * The floor is what any two-phase round must pay at least, each part the median of repeated
 * timings taken while the cluster is still up:
 * - two gRPC round trips to the worker (WorkerClient.status, whose reply lists every captured
 *   queue, about the size of a PREPARE reply);
 * - one Redis decision write: HSET of a record the size of the largest this run's decision log
 *   holds (decision-log.ts writes its records with an HSET inside a script);
 * - one PUT to the same store of an object the size of the newest checkpoint manifest.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { WorkerClient } from '../../services/core/grpc/worker-client.js';
import { redisKeys } from '../../services/core/format/names.js';
import { openStore } from '../../services/core/store/open-store.js';
import { CHECKPOINTS_PREFIX } from '../../services/core/store/keys.js';
import type { TestCluster } from '../helpers/cluster.js';
import { runConfiguration } from './scale.js';
import { log, msText, now, spread, TARGETS, type BenchContext, type Ratio } from './bench-kit.js';

/** Light background traffic while the rounds run, as in bench:scale (messages per second). */
const PRODUCER_RATE = 200;
const SAMPLES = 30;

interface Floor {
  rpcMs: number;
  redisMs: number;
  redisBytes: number;
  putMs: number;
  putBytes: number;
  total: number;
}

async function timed(samples: number, once: (i: number) => Promise<unknown>): Promise<number> {
  // The first few calls open connections and warm caches: not part of a round's cost.
  for (let i = 0; i < 3; i += 1) await once(-1 - i);
  const times: number[] = [];
  for (let i = 0; i < samples; i += 1) {
    const started = now();
    await once(i);
    times.push(now() - started);
  }
  return spread(times).median;
}

async function measureFloor(cluster: TestCluster, namespace: string, redisUrl: string): Promise<Floor> {
  const status = await cluster.client.status();
  const info = status.workers[0];
  if (!info) throw new Error('no worker in the cluster status');
  const worker = new WorkerClient(info.address, { workerId: info.workerId, tls: cluster.workerTls });
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
  const store = await openStore({ store: cluster.storeUrl, s3Region: 'us-east-1' });
  try {
    const rpcMs = await timed(SAMPLES, () => worker.status(10_000));

    await redis.connect();
    const records = await redis.hvals(redisKeys(namespace).decisions);
    const redisBytes = Math.max(0, ...records.map((r) => Buffer.byteLength(r)));
    if (redisBytes === 0) throw new Error('the decision log holds no record to size the Redis write by');
    const value = 'x'.repeat(redisBytes);
    const scratch = `${namespace}:bench-floor`;
    const redisMs = await timed(SAMPLES, (i) => redis.hset(scratch, String(i), value));
    await redis.del(scratch);

    const manifests = await store.list(CHECKPOINTS_PREFIX);
    if (manifests.length === 0) throw new Error('the store holds no checkpoint manifest to size the PUT by');
    const putBytes = (await store.get(manifests[manifests.length - 1])).length;
    const body = randomBytes(putBytes);
    const keys: string[] = [];
    const putMs = await timed(SAMPLES, (i) => {
      const key = `bench-floor/manifest-${keys.length}-${i}`;
      keys.push(key);
      return store.put(key, body);
    });
    for (const key of keys) await store.delete(key);
    return { rpcMs, redisMs, redisBytes, putMs, putBytes, total: 2 * rpcMs + redisMs + putMs };
  } finally {
    worker.close();
    redis.disconnect();
    await store.close();
  }
}

export async function measureRoundLatency(ctx: BenchContext, queues: number): Promise<Ratio> {
  let floor: Floor | undefined;
  let forget: (() => Promise<void>) | undefined;
  const result = await runConfiguration(
    ctx.services,
    queues,
    1,
    ctx.rounds,
    PRODUCER_RATE,
    // scale.ts hands over its clean-up while a configuration runs (idempotent), and undefined after.
    (cleanUp) => {
      if (cleanUp) forget = ctx.cleanUps.add(`round-latency configuration of ${queues} queues`, cleanUp);
      else void forget?.();
    },
    { onMeasured: async ({ cluster, namespace }) => void (floor = await measureFloor(cluster, namespace, ctx.services.redisUrl)) },
  );
  if (result.error) throw new Error(result.error);
  if (!floor) throw new Error('the floor was not measured');
  const f = floor;
  log(`round latency ${queues} queues: round p50 ${msText(result.roundP50)}, p99 ${msText(result.roundP99)}; floor ${f.total.toFixed(1)} ms`);
  return {
    name: 'round_p99_over_floor',
    label: `${queues}q`,
    value: result.roundP99 / f.total,
    target: TARGETS.round_p99_over_floor,
    detail:
      `round p50 ${msText(result.roundP50)}, p99 ${msText(result.roundP99)} (${result.committed}/${result.rounds} committed; admin call p50 ${msText(result.p50)}, p99 ${msText(result.p99)} with waits behind discovery); ` +
      `floor ${f.total.toFixed(1)} ms = 2 x gRPC ${f.rpcMs.toFixed(1)} + Redis HSET ${f.redisMs.toFixed(2)} (${f.redisBytes} B) + manifest PUT ${f.putMs.toFixed(1)} (${f.putBytes} B); ` +
      `fence ${msText(result.split.fence)}, prepare ${msText(result.split.prepare)}, commit ${msText(result.split.commit)} (medians)`,
  };
}
