/**
 * store_growth (issue 13): does the store follow what the queues hold, or how long they have been
 * protected? Steady traffic that consumers keep up with, one round a second, keep-last-5
 * retention with garbage collection, history kept 5 s. At T and at 4T the step measures:
 *
 * - store_bytes:    every object under the store root;
 * - manifest_bytes: the mean size of the checkpoint manifests the store holds (how many it holds
 *                   moves by one or two with the rounds inside the grace period; what would grow
 *                   with history is each manifest, a full one listing every segment ever written);
 * - restore_ms:     a contents restore of `latest` (the fastest of seven), into fresh queues.
 *
 * Each figure is its value after 4T ÷ after T; the target is ≤ 1.1 (a store that grew with its
 * history would be near 4). Before issue 13 nothing was deleted and each of them grew linearly.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Channel, ConfirmChannel } from 'amqplib';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { amqpUrlForVhost, createTestVhost, uniqueName } from '../helpers/services.js';
import { forgetNamespace, removeVhost } from './scale.js';
import { connectAmqp, log, now, sleep, spread, TARGETS, type BenchContext, type Ratio } from './bench-kit.js';

const QUEUES = ['g-orders', 'g-emails', 'g-events', 'g-jobs'];
/** Messages per second per queue, and their size. */
const RATE = 100;
const BODY = Buffer.alloc(1024, 'x');
/**
 * Restores of `latest` per measurement. Each takes a few hundred ms, mostly fixed costs that the
 * machine's other load moves by tens of ms, so the fastest is the figure.
 */
const RESTORES = 7;

export interface GrowthOptions {
  /** Seconds until the first measurement; the second comes at four times this. */
  t: number;
}

interface Point {
  storeBytes: number;
  manifestBytes: number;
  restoreMs: number;
  epoch: number;
}

/** Bytes of every file under `dir` (the local-directory store), and the mean size of those under checkpoints/. */
function storeSizes(dir: string): { storeBytes: number; manifestBytes: number } {
  let storeBytes = 0;
  let manifestBytes = 0;
  let manifests = 0;
  const walk = (path: string, inManifests: boolean) => {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      const full = join(path, entry.name);
      if (entry.isDirectory()) walk(full, inManifests || (path === dir && entry.name === 'checkpoints'));
      else if (entry.isFile() && !entry.name.startsWith('.tidemark-tmp-')) {
        const size = statSync(full).size;
        storeBytes += size;
        if (inManifests) {
          manifestBytes += size;
          manifests += 1;
        }
      }
    }
  };
  walk(dir, false);
  return { storeBytes, manifestBytes: manifests === 0 ? 0 : manifestBytes / manifests };
}

export async function measureStoreGrowth(ctx: BenchContext, options: GrowthOptions): Promise<Ratio[]> {
  const { services } = ctx;
  const vhost = uniqueName('tm-growth');
  const namespace = uniqueName('tmgrowth');
  const url = amqpUrlForVhost(services.amqpUrl, vhost);
  let cluster: TestCluster | undefined;
  let stopTraffic = async () => {};
  const done = ctx.cleanUps.add(`store-growth cluster and vhost ${vhost}`, async () => {
    await stopTraffic();
    await cluster?.stop();
    await removeVhost(services.managementUrl, vhost);
    await forgetNamespace(services.redisUrl, namespace);
  });
  await createTestVhost(services.managementUrl, vhost);
  const connection = await connectAmqp(url);
  const setup = await connection.createChannel();
  await setup.assertExchange('growth', 'direct', { durable: true });
  for (const q of QUEUES) {
    await setup.assertQueue(q, { durable: true });
    await setup.bindQueue(q, 'growth', q);
  }
  await setup.close();
  cluster = await startTestCluster({
    services,
    namespace,
    protect: `${vhost}:g-*`,
    store: { kind: 'file' },
    workers: 1,
    interval: '1s',
    prepareTimeout: '5s',
    extraEnv: {
      TIDEMARK_LEASE_TIME: '2s',
      // The consumers below acknowledge in order.
      TIDEMARK_HEAD_MAX_HOLD: '0',
      TIDEMARK_RETAIN_LAST: '5',
      TIDEMARK_RETAIN_WITHIN: '0',
      TIDEMARK_RETAIN_DAILY: '0',
      TIDEMARK_RETAIN_WEEKLY: '0',
      TIDEMARK_RETAIN_MONTHLY: '0',
      TIDEMARK_RETAIN_HISTORY: '5s',
      TIDEMARK_PRUNE_INTERVAL: '1s',
      TIDEMARK_GC_GRACE: '10s',
      TIDEMARK_FULL_EVERY: '5',
    },
  });
  await cluster.waitForStatus((s) => s.protectedQueues === QUEUES.length && s.workers[0]?.queues === QUEUES.length, 'growth queues protected', 60_000);
  const storeDir = fileURLToPath(cluster.storeUrl);

  // Producers at RATE per queue with confirms; consumers with prefetch 20 that keep up.
  const producer: ConfirmChannel = await connection.createConfirmChannel();
  const consumers: Channel[] = [];
  for (const q of QUEUES) {
    const channel = await connection.createChannel();
    await channel.prefetch(20);
    await channel.consume(q, (msg) => msg && channel.ack(msg));
    consumers.push(channel);
  }
  let sent = 0;
  const timer = setInterval(() => {
    for (const q of QUEUES) for (let i = 0; i < RATE / 10; i += 1) producer.publish('growth', q, BODY, { persistent: true, messageId: `m-${sent++}` });
  }, 100);
  stopTraffic = async () => {
    clearInterval(timer);
    await producer.waitForConfirms().catch(() => {});
    for (const c of consumers) await c.close().catch(() => {});
    await connection.close().catch(() => {});
  };

  const started = now();
  let restores = 0;
  const measure = async (): Promise<Point> => {
    const times: number[] = [];
    let epoch = 0;
    for (let i = 0; i < RESTORES; i += 1) {
      const prefix = `restored-${restores++}.`;
      const t0 = now();
      for await (const event of cluster!.client.restore({ checkpoint: 'latest', prefix, bindings: 'none' })) {
        if (event.event?.$case === 'plan') epoch = event.event.value.checkpoint;
        if (event.event?.$case === 'done' && event.event.value.failedQueues > 0) throw new Error(`restore of checkpoint ${epoch} failed ${event.event.value.failedQueues} queue(s)`);
      }
      times.push(now() - t0);
      const cleanup = await connection.createChannel();
      for (const q of QUEUES) await cleanup.deleteQueue(`${prefix}${q}`);
      await cleanup.close();
    }
    return { ...storeSizes(storeDir), restoreMs: spread(times).min, epoch };
  };
  const until = async (seconds: number) => {
    const wait = started + seconds * 1000 - now();
    if (wait > 0) await sleep(wait);
  };
  await until(options.t);
  const atT = await measure();
  log(`store growth at T=${options.t}s: checkpoint ${atT.epoch}, store ${atT.storeBytes} B, manifests ${atT.manifestBytes} B, restore ${atT.restoreMs.toFixed(0)} ms`);
  await until(4 * options.t);
  const at4T = await measure();
  log(`store growth at 4T=${4 * options.t}s: checkpoint ${at4T.epoch}, store ${at4T.storeBytes} B, manifests ${at4T.manifestBytes} B, restore ${at4T.restoreMs.toFixed(0)} ms`);
  const published = sent * BODY.length;
  await done();
  const ratio = (label: string, a: number, b: number, unit: string): Ratio => ({
    name: 'store_growth',
    label,
    value: b / a,
    target: TARGETS.store_growth,
    detail: `${fmt(b)} ${unit} after ${4 * options.t}s ÷ ${fmt(a)} ${unit} after ${options.t}s; checkpoints ${atT.epoch} and ${at4T.epoch}; ${fmt(published)} B published in all`,
  });
  return [
    ratio('store_bytes', atT.storeBytes, at4T.storeBytes, 'B'),
    ratio('manifest_bytes', atT.manifestBytes, at4T.manifestBytes, 'B per manifest'),
    ratio('restore_ms', atT.restoreMs, at4T.restoreMs, 'ms'),
  ];
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
