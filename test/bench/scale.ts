/**
 * `npm run bench:scale`: what a checkpoint round costs as queues and workers grow, and how long a
 * rebalance takes when a worker dies. For each configuration (queues × workers) it makes a fresh
 * vhost of classic queues, runs a real cluster (the built CLI, local-directory store) over it,
 * keeps a light confirmed producer going, runs rounds back to back, then SIGKILLs a worker.
 *
 * Usage: node dist/test/bench/scale.js [--quick] [--queues 100,1000,5000] [--workers 1,3,6]
 *                                      [--rounds 20] [--rate 200] [--no-doc]
 *   --quick    queues 100,1000, workers 1,3, rounds 10 (the default is the full matrix above)
 *   --rate     producer messages per second, spread over the queues
 *   --no-doc   print only; by default the results replace this run kind's section of docs/SCALE.md
 *
 * RabbitMQ comes from TIDEMARK_TEST_AMQP_URL / TIDEMARK_TEST_MANAGEMENT_URL and Redis from
 * TIDEMARK_TEST_REDIS_URL, else localhost as guest (as for `npm run chaos`).
 *
 * Round figures are the coordinator's: `durationMs` of the waited checkpoint call, which includes
 * waiting behind a discovery pass. The breakdown comes from the committed manifest's timestamps
 * and the leader's own round duration (status().lastRound).
 *
 * `npm run bench` (bench.ts) runs single configurations through {@link runConfiguration} for its
 * round-latency figures; main() runs only when this file is the program.
 */
import { rmSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import amqp from 'amqplib';
import { Redis } from 'ioredis';
import { RoundOutcome } from '../../services/client/index.js';
import { ManagementClient } from '../../services/core/amqp/management-client.js';
import { queuesTheBrokerAllows } from '../helpers/broker-budget.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { repositoryRoot } from '../helpers/repo.js';
import { amqpUrlForVhost, createTestVhost, uniqueName, type TestServices } from '../helpers/services.js';
import { replaceDocSection } from './bench-kit.js';

interface Args {
  queues: number[];
  workers: number[];
  rounds: number;
  rate: number;
  kind: 'quick' | 'full' | 'custom';
  doc: boolean;
}

const USAGE = 'usage: bench:scale [--quick] [--queues 100,1000,5000] [--workers 1,3,6] [--rounds 20] [--rate 200] [--no-doc]';

function parseArgs(argv: string[]): Args {
  const args: Args = { queues: [100, 1_000, 5_000], workers: [1, 3, 6], rounds: 20, rate: 200, kind: 'full', doc: true };
  const list = (flag: string, value: string | undefined) => {
    const numbers = (value ?? '').split(',').map(Number);
    if (numbers.length === 0 || !numbers.every((n) => Number.isSafeInteger(n) && n > 0)) throw new Error(`${flag} takes positive whole numbers, comma-separated; got "${value}"`);
    return numbers;
  };
  // An explicit matrix is neither the quick nor the full run: it gets its own section of the doc.
  let custom = false;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--quick') Object.assign(args, { queues: [100, 1_000], workers: [1, 3], rounds: 10, kind: 'quick' });
    else if (arg === '--queues') args.queues = list(arg, argv[++i]);
    else if (arg === '--workers') args.workers = list(arg, argv[++i]);
    else if (arg === '--rounds') args.rounds = list(arg, argv[++i])[0];
    else if (arg === '--rate') args.rate = list(arg, argv[++i])[0];
    else if (arg === '--no-doc') args.doc = false;
    else throw new Error(`unknown argument ${arg}; ${USAGE}`);
    if (['--queues', '--workers', '--rounds'].includes(arg)) custom = true;
  }
  if (custom) args.kind = 'custom';
  return args;
}

const env = (name: string) => (process.env[name] === '' ? undefined : process.env[name]);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (line: string) => console.log(`[scale ${new Date().toISOString().slice(11, 23)}] ${line}`);

/** Nearest-rank percentile; with fewer than 100 samples p99 is the maximum. */
function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)];
}
const median = (values: number[]) => percentile([...values].sort((a, b) => a - b), 0.5);

export interface Result {
  queues: number;
  workers: number;
  /** Rounds run after the first one (fewer than asked when the configuration stopped early). */
  rounds: number;
  committed: number;
  aborted: number;
  /** Seconds from cluster start until every queue had a journal and an owner. */
  setupS: number;
  firstMs: number;
  firstCommitted?: boolean;
  p50: number;
  p99: number;
  max: number;
  /** Percentiles of the leader's own round duration (status().lastRound), committed rounds only: no wait behind discovery. */
  roundP50: number;
  roundP99: number;
  /** Medians over committed rounds: waiting behind discovery, start+fence, prepare (votes), decision+manifest. */
  split: { queued: number; fence: number; prepare: number; commit: number };
  published: number;
  /** SIGKILL → every queue owned by the survivors; SIGKILL → next committed round. */
  rebalanceMs?: number;
  rebalanceCommitMs?: number;
  /** Most file descriptors the broker had open during the configuration. */
  peakFds: number;
  abortReasons: string[];
  error?: string;
}

/** A confirmed producer publishing `rate` messages a second round-robin over the queues. */
function startProducer(url: string, exchange: string, queues: string[], rate: number) {
  let stopped = false;
  let published = 0;
  const done = (async () => {
    const connection = await amqp.connect(url);
    try {
      const channel = await connection.createConfirmChannel();
      const tickMs = 100;
      const perTick = Math.max(1, Math.round((rate * tickMs) / 1_000));
      let next = 0;
      while (!stopped) {
        const started = Date.now();
        for (let k = 0; k < perTick; k += 1, next += 1) {
          const queue = queues[next % queues.length];
          channel.publish(exchange, queue, Buffer.from(`${queue}:${next}`), { persistent: true, messageId: String(next) });
        }
        await channel.waitForConfirms();
        published += perTick;
        await sleep(Math.max(0, tickMs - (Date.now() - started)));
      }
    } finally {
      await connection.close().catch(() => {});
    }
  })();
  return {
    get published() {
      return published;
    },
    async stop() {
      stopped = true;
      await done;
    },
    done,
  };
}

/** Deletes the run's Redis keys (leases, epochs, decisions), which all start with `namespace:`. */
export async function forgetNamespace(redisUrl: string, namespace: string): Promise<void> {
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
  try {
    await redis.connect();
    for await (const keys of redis.scanStream({ match: `${namespace}:*`, count: 500 }) as AsyncIterable<string[]>) {
      if (keys.length > 0) await redis.del(...keys);
    }
  } finally {
    redis.disconnect();
  }
}

/** Status shows `count` protected queues, all owned by `workers` live workers (none of them `gone`). */
const assignedTo = (count: number, workers: number, gone?: string) => (s: { protectedQueues: number; workers: { workerId: string; queues: number }[] }) =>
  s.protectedQueues === count &&
  s.workers.length === workers &&
  !s.workers.some((w) => w.workerId === gone) &&
  s.workers.reduce((n, w) => n + w.queues, 0) === count;

/** Fails the configuration when the broker's file descriptors run this low: the broker is shared. */
const FD_LIMIT = 0.9;

/** Polls the broker node's file descriptors: remembers the peak, and `tripped` rejects past FD_LIMIT. */
function watchBroker(managementUrl: string) {
  const url = new URL(managementUrl);
  const auth = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`;
  let peak = 0;
  let trip: (err: Error) => void = () => {};
  const tripped = new Promise<never>((_, reject) => (trip = reject));
  tripped.catch(() => {});
  const poll = async () => {
    const response = await fetch(`${url.protocol}//${url.host}/api/nodes?columns=fd_used,fd_total`, { headers: { authorization: auth }, signal: AbortSignal.timeout(5_000) });
    const nodes = (await response.json()) as Array<{ fd_used?: number; fd_total?: number }>;
    for (const { fd_used: used = 0, fd_total: total = Infinity } of nodes) {
      peak = Math.max(peak, used);
      if (used > FD_LIMIT * total) trip(new Error(`the broker has ${used} of its ${total} file descriptors in use; stopped this configuration before it exhausts a shared broker`));
    }
  };
  const timer = setInterval(() => void poll().catch(() => {}), 2_000);
  return {
    tripped,
    get peak() {
      return peak;
    },
    stop: () => clearInterval(timer),
  };
}

/**
 * Deletes the vhost with a patient client: deleting thousands of streams takes far longer than
 * the test helper's 10 s request limit. What still fails is reported, not hidden.
 */
export async function removeVhost(managementUrl: string, vhost: string): Promise<void> {
  const management = new ManagementClient(managementUrl, { timeoutMs: 600_000 });
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await management.deleteVhost(vhost);
    } catch (err) {
      if (attempt >= 3) throw err;
      log(`deleting vhost ${vhost} failed (${(err as Error).message}); retrying`);
      await sleep(5_000);
    }
  }
}

/** Declares `queues` (classic, durable) bound by name to direct exchange `bench`, over one channel. */
async function declareQueues(url: string, queues: string[]): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    await channel.assertExchange('bench', 'direct', { durable: true });
    // amqplib pipelines the calls of one channel: no round trip per queue.
    await Promise.all(queues.flatMap((q) => [channel.assertQueue(q, { durable: true }), channel.bindQueue(q, 'bench', q)]));
  } finally {
    await connection.close();
  }
}

/** A run of aborted rounds this long ends the configuration: its reason is the finding. */
const ABORT_STREAK = 3;

/** Runs `rounds` waited rounds back to back into `result`: percentiles and the median breakdown. */
async function measureRounds(cluster: TestCluster, rounds: number, result: Result): Promise<void> {
  const durations: number[] = [];
  const split: Record<keyof Result['split'], number[]> = { queued: [], fence: [], prepare: [], commit: [] };
  const roundDurations: number[] = [];
  let streak = 0;
  for (let r = 0; r < rounds && streak < ABORT_STREAK; r += 1) {
    const reply = await cluster.client.checkpoint(true);
    durations.push(reply.durationMs);
    if (reply.outcome !== RoundOutcome.ROUND_OUTCOME_COMMITTED) {
      result.aborted += 1;
      result.abortReasons.push(reply.reason);
      streak += 1;
      continue;
    }
    streak = 0;
    result.committed += 1;
    const [status, manifest] = await Promise.all([cluster.client.status(), cluster.client.getCheckpoint(String(reply.epoch))]);
    const roundMs = status.lastRound?.epoch === reply.epoch ? status.lastRound.durationMs : reply.durationMs;
    const fencedAt = manifest.fences[0]?.publishedAtMs ?? manifest.startedAtMs;
    roundDurations.push(roundMs);
    split.queued.push(reply.durationMs - roundMs);
    split.fence.push(fencedAt - manifest.startedAtMs);
    split.prepare.push(manifest.committedAtMs - fencedAt);
    split.commit.push(roundMs - (manifest.committedAtMs - manifest.startedAtMs));
  }
  result.rounds = durations.length;
  if (streak >= ABORT_STREAK) result.error = `stopped after ${ABORT_STREAK} aborted rounds in a row`;
  const sorted = [...durations].sort((a, b) => a - b);
  Object.assign(result, { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: percentile(sorted, 1) });
  const roundSorted = roundDurations.sort((a, b) => a - b);
  Object.assign(result, { roundP50: percentile(roundSorted, 0.5), roundP99: percentile(roundSorted, 0.99) });
  result.split = { queued: median(split.queued), fence: median(split.fence), prepare: median(split.prepare), commit: median(split.commit) };
}

/** SIGKILLs a worker; times until the survivors own every queue, and until a round commits again. */
async function measureRebalance(cluster: TestCluster, queueCount: number, workerCount: number, result: Result): Promise<void> {
  const victim = 'worker-1';
  const killedAt = Date.now();
  await cluster.kill(victim);
  await cluster.waitForStatus(assignedTo(queueCount, workerCount - 1, victim), `${queueCount} queues reassigned after ${victim} died`, 120_000 + queueCount * 50);
  result.rebalanceMs = Date.now() - killedAt;
  for (let attempt = 1; ; attempt += 1) {
    const reply = await cluster.client.checkpoint(true);
    if (reply.outcome === RoundOutcome.ROUND_OUTCOME_COMMITTED) break;
    if (attempt >= ABORT_STREAK) throw new Error(`no round committed after ${victim} died and its queues moved: ${reply.reason}`);
  }
  result.rebalanceCommitMs = Date.now() - killedAt;
  log(`${victim} killed: queues reassigned in ${result.rebalanceMs} ms, next round committed ${result.rebalanceCommitMs} ms after the kill`);
}

/** What a caller of {@link runConfiguration} may add to a configuration. */
export interface ConfigurationHooks {
  /** Runs after the rounds (and the rebalance), while the cluster is still up; a throw fails the configuration. */
  onMeasured?: (run: { cluster: TestCluster; namespace: string; vhost: string }) => Promise<void>;
}

export async function runConfiguration(
  services: TestServices,
  queueCount: number,
  workerCount: number,
  rounds: number,
  rate: number,
  onCleanUp: (f?: () => Promise<void>) => void,
  hooks: ConfigurationHooks = {},
): Promise<Result> {
  // Never more queues than the broker's open-file budget allows: the broker is shared, and the
  // coordinator's resource guard would hold the rest back anyway.
  const allowance = await queuesTheBrokerAllows(services.managementUrl, queueCount);
  if (allowance.count < queueCount) log(allowance.note);
  queueCount = allowance.count;
  const result: Result = {
    queues: queueCount,
    workers: workerCount,
    rounds: 0,
    committed: 0,
    aborted: 0,
    setupS: NaN,
    firstMs: NaN,
    p50: NaN,
    p99: NaN,
    max: NaN,
    roundP50: NaN,
    roundP99: NaN,
    published: 0,
    peakFds: 0,
    split: { queued: NaN, fence: NaN, prepare: NaN, commit: NaN },
    abortReasons: [],
  };
  const vhost = uniqueName('tm-bench');
  const namespace = uniqueName('tmscale');
  const queues = Array.from({ length: queueCount }, (_, i) => `q${String(i).padStart(5, '0')}`);
  const broker = watchBroker(services.managementUrl);
  let cluster: TestCluster | undefined;
  let producer: ReturnType<typeof startProducer> | undefined;
  let cleaned: Promise<void> | undefined;
  const cleanUp = () =>
    (cleaned ??= (async () => {
      broker.stop();
      await producer?.stop().catch(() => {});
      await cluster?.stop().catch((err: unknown) => log(`stopping the cluster: ${(err as Error).message}`));
      await removeVhost(services.managementUrl, vhost).catch((err: unknown) => {
        log(`LEFT BEHIND: vhost ${vhost}: ${(err as Error).message}`);
        result.error = [result.error, `vhost ${vhost} could not be deleted: ${(err as Error).message}`].filter(Boolean).join('; ');
      });
      await forgetNamespace(services.redisUrl, namespace).catch((err: unknown) => log(`removing Redis keys ${namespace}:*: ${(err as Error).message}`));
    })());
  onCleanUp(cleanUp);
  const measure = async () => {
    await createTestVhost(services.managementUrl, vhost);
    const declaredAt = Date.now();
    await declareQueues(amqpUrlForVhost(services.amqpUrl, vhost), queues);
    log(`vhost ${vhost}: ${queueCount} queues declared and bound in ${((Date.now() - declaredAt) / 1000).toFixed(1)} s`);

    const startedAt = Date.now();
    cluster = await startTestCluster({
      services,
      namespace,
      protect: `${vhost}:q*`,
      store: { kind: 'file' },
      workers: workerCount,
      prepareTimeout: '120s',
      extraEnv: { TIDEMARK_DISCOVERY_INTERVAL: '1s' },
    });
    // Journal streams are created one at a time by the first discovery passes: allow ~100 ms each.
    const status = await cluster.waitForStatus(assignedTo(queueCount, workerCount), `${queueCount} queues protected and assigned`, 120_000 + queueCount * 100);
    result.setupS = (Date.now() - startedAt) / 1000;
    log(`cluster up (log ${cluster.logFile}); ${queueCount} journals provisioned and assigned in ${result.setupS.toFixed(1)} s`);
    for (const w of status.workers) if (w.error) log(`${w.workerId}: ${w.error.slice(0, 300)}`);

    producer = startProducer(amqpUrlForVhost(services.amqpUrl, vhost), 'bench', queues, rate);
    producer.done.catch((err: unknown) => log(`producer stopped: ${(err as Error).message}`));
    await sleep(2_000);
    // The first round is a full checkpoint of everything captured so far: reported apart.
    const first = await cluster.client.checkpoint(true);
    result.firstMs = first.durationMs;
    result.firstCommitted = first.outcome === RoundOutcome.ROUND_OUTCOME_COMMITTED;
    log(`first round ${first.durationMs} ms (${first.outcome === RoundOutcome.ROUND_OUTCOME_COMMITTED ? 'committed' : `aborted: ${first.reason}`})`);
    await measureRounds(cluster, rounds, result);
    if (workerCount > 1 && !result.error) await measureRebalance(cluster, queueCount, workerCount, result);
    if (hooks.onMeasured && !result.error) await hooks.onMeasured({ cluster, namespace, vhost });
  };
  try {
    const measuring = measure();
    // Past a tripped watch the measurement fails on its own as the cluster stops: nothing to hear.
    measuring.catch(() => {});
    await Promise.race([measuring, broker.tripped]);
    result.published = producer?.published ?? 0;
    result.peakFds = broker.peak;
    // A clean run leaves nothing behind; a failed one keeps its directory (log and store).
    const dir = cluster && !result.error ? dirname(cluster.logFile) : undefined;
    await cleanUp();
    if (dir) rmSync(dir, { recursive: true, force: true });
  } catch (err) {
    result.error = (err as Error).message;
    result.published = producer?.published ?? 0;
    result.peakFds = broker.peak;
    await cleanUp();
  } finally {
    onCleanUp(undefined);
  }
  return result;
}

const ms = (n: number | undefined) => (n === undefined ? '-' : Number.isNaN(n) ? 'n/a' : String(Math.round(n)));

function resultLine(r: Result): string {
  const head = `queues=${r.queues} workers=${r.workers} rounds=${r.rounds} committed=${r.committed} aborted=${r.aborted}`;
  const figures = `p50_ms=${ms(r.p50)} p99_ms=${ms(r.p99)} max_ms=${ms(r.max)} rebalance_ms=${ms(r.rebalanceMs)} broker_fds=${r.peakFds}`;
  return `${head} ${figures}${r.error ? ` FAILED: ${r.error.slice(0, 300)}` : ''}`;
}

function table(results: Result[]): string {
  const rows = [
    '| queues | workers | committed / rounds | p50 ms | p99 ms | max ms | first round ms | queued · fence · prepare · commit (median ms) | setup s | rebalance ms | rebalance → commit ms | broker fds (peak) |',
    '|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    const split = `${ms(r.split.queued)} · ${ms(r.split.fence)} · ${ms(r.split.prepare)} · ${ms(r.split.commit)}`;
    const setup = Number.isNaN(r.setupS) ? 'n/a' : r.setupS.toFixed(1);
    rows.push(`| ${r.queues} | ${r.workers} | ${r.committed} / ${r.rounds} | ${ms(r.p50)} | ${ms(r.p99)} | ${ms(r.max)} | ${ms(r.firstMs)}${r.firstCommitted === false ? ' (aborted)' : ''} | ${split} | ${setup} | ${ms(r.rebalanceMs)} | ${ms(r.rebalanceCommitMs)} | ${r.peakFds || 'n/a'} |`);
  }
  return rows.join('\n');
}

/** Replaces this run kind's section of docs/SCALE.md (between its markers), or appends one. */
function writeDoc(kind: Args['kind'], command: string, machine: string, results: Result[]): string {
  const path = join(repositoryRoot(), 'docs', 'SCALE.md');
  const notes = results.flatMap((r) => [
    ...(r.error ? [`- queues=${r.queues} workers=${r.workers} did not finish: ${r.error.slice(0, 500)}`] : []),
    ...[...new Set(r.abortReasons)].map((reason) => `- queues=${r.queues} workers=${r.workers} aborted: ${reason.slice(0, 300)}`),
  ]);
  const title = kind === 'full' ? 'Full matrix' : kind === 'quick' ? 'Quick run' : 'Custom run';
  const body = [`### ${title}: \`${command}\``, '', machine, '', table(results), '', ...notes, ...(notes.length > 0 ? [''] : [])];
  replaceDocSection(path, `bench:scale ${kind}`, body, '# Scale\n\nWritten by `npm run bench:scale`.\n');
  return path;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const services: TestServices = {
    amqpUrl: env('TIDEMARK_TEST_AMQP_URL') ?? 'amqp://guest:guest@localhost:5672',
    managementUrl: env('TIDEMARK_TEST_MANAGEMENT_URL') ?? 'http://guest:guest@localhost:15672',
    redisUrl: env('TIDEMARK_TEST_REDIS_URL') ?? 'redis://localhost:6379',
    // The store is a local directory: no S3 server is used.
    s3: { endpoint: '', accessKey: '', secretKey: '', region: 'us-east-1' },
  };
  const overview = await new ManagementClient(services.managementUrl).overview();
  const started = new Date();
  const machine =
    `${started.toISOString().slice(0, 16).replace('T', ' ')} UTC · ${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'unknown CPU'}), ` +
    `${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM · Node ${process.versions.node} · RabbitMQ ${overview.rabbitmqVersion} · ` +
    `${args.rounds} rounds per configuration, producer ${args.rate} msg/s`;
  log(machine);
  let cleanUp: (() => Promise<void>) | undefined;
  const interrupt = (signal: NodeJS.Signals) => {
    log(`${signal}: cleaning up`);
    void (cleanUp?.() ?? Promise.resolve()).finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);

  const results: Result[] = [];
  for (const queues of args.queues) {
    for (const workers of args.workers) {
      log(`--- queues=${queues} workers=${workers}`);
      const t0 = Date.now();
      const result = await runConfiguration(services, queues, workers, args.rounds, args.rate, (f) => (cleanUp = f));
      results.push(result);
      console.log(resultLine(result));
      log(`configuration took ${((Date.now() - t0) / 1000).toFixed(0)} s; ${result.published} messages published`);
    }
  }
  console.log(`\n${table(results)}\n`);
  const command = `npm run bench:scale${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  if (args.doc) log(`results written to ${writeDoc(args.kind, command, machine, results)}`);
  return results.every((r) => !r.error && r.aborted === 0) ? 0 : 1;
}

// Imported by bench.ts for runConfiguration: only the program itself runs the matrix.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err);
      console.log(`scale bench failed: ${(err as Error).message}`);
      process.exit(1);
    },
  );
}
