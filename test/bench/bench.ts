/**
 * `npm run bench`: Tidemark's throughput and latency as ratios against what the broker, Redis and
 * the store do without it, measured side by side in one run against the same services (issue 6).
 *
 * Usage: node dist/test/bench/bench.js [--quick] [--no-doc] [--only capture,restore,producer,overhead,latency,growth,encryption] [--reps N]
 *   --quick    fewer messages, repetitions and rounds: finishes within five minutes on two cores
 *   --no-doc   print only; by default the results replace this run kind's section of BENCHMARKS.md
 *   --only     run some steps (restore needs capture, which then runs too); a custom run
 *   --reps     repetitions after the warm-up (default 5, quick 3); a custom run
 *
 * Figures, each for 128-byte and 4 KiB messages unless said (how each is taken: the file named):
 * - capture_efficiency   QueueCapture into durable segments ÷ bare amqplib consumer (capture-efficiency.ts)
 * - restore_efficiency   runRestoreTask ÷ bare amqplib confirmed publisher of the same messages,
 *                        origin headers included (restore-efficiency.ts)
 * - round_overhead       cluster capture rate, rounds every 1 s ÷ rounds off (round-overhead.ts)
 * - round_p99_over_floor round p99 ÷ 2 gRPC + Redis write + manifest PUT, at 100 and 1,000 queues (round-latency.ts)
 * - producer_impact      confirmed publish rate with a journal ÷ without (producer-impact.ts)
 * - store_growth         store bytes, manifest bytes and the time to restore latest after 4T ÷ after T,
 *                        steady traffic consumers keep up with, a round a second, keep-last-5 (store-growth.ts)
 * - encryption_cost      capture and restore with a master key ÷ without, the worker's own code on
 *                        both sides, side by side (encryption-cost.ts)
 * Each prints as one line: `ratio <name> <size|queues> <value> target <op><t> <met|NOT met> (<detail>)`.
 *
 * RabbitMQ comes from TIDEMARK_TEST_AMQP_URL / TIDEMARK_TEST_MANAGEMENT_URL and Redis from
 * TIDEMARK_TEST_REDIS_URL, else localhost as guest; the store is a local directory. Every vhost,
 * Redis key and directory the run creates is removed at the end, on failure, SIGINT or SIGTERM.
 * Exit code 0 when every figure was measured (met or not), 1 otherwise.
 */
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { ManagementClient } from '../../services/core/amqp/management-client.js';
import { amqpUrlForVhost, createTestVhost, uniqueName } from '../helpers/services.js';
import { repositoryRoot } from '../helpers/repo.js';
import { CleanUps, failedRatio, log, met, ratioLine, replaceDocSection, servicesFromEnv, SIZES, workerDefaults, type BenchContext, type Counts, type Ratio } from './bench-kit.js';
import { measureCapture } from './capture-efficiency.js';
import { measureProducerImpact } from './producer-impact.js';
import { startProtectedCluster } from './protected-cluster.js';
import { measureRestore } from './restore-efficiency.js';
import { measureRoundLatency } from './round-latency.js';
import { measureRoundOverhead } from './round-overhead.js';
import { measureStoreGrowth } from './store-growth.js';
import { measureEncryption } from './encryption-cost.js';
import { forgetNamespace, removeVhost } from './scale.js';

const STEPS = ['capture', 'restore', 'producer', 'overhead', 'latency', 'growth', 'encryption'] as const;
type Step = (typeof STEPS)[number];

interface Args {
  kind: 'quick' | 'full' | 'custom';
  doc: boolean;
  steps: Set<Step>;
  reps: number;
  /** Repetitions of the round-overhead pair, each two cluster restarts. */
  overheadReps: number;
  rounds: number;
  counts: Counts;
  queueCounts: number[];
  /** Seconds to the store-growth step's first measurement (the second is at 4×). */
  growthT: number;
}

const USAGE = 'usage: bench [--quick] [--no-doc] [--only capture,restore,producer,overhead,latency,growth,encryption] [--reps N]';

const FULL: Omit<Args, 'kind' | 'doc' | 'steps'> = {
  reps: 5,
  overheadReps: 4,
  rounds: 20,
  counts: {
    capture: { '128B': 500_000, '4KiB': 60_000 },
    restore: { '128B': 100_000, '4KiB': 30_000 },
    overhead: { '128B': 150_000, '4KiB': 11_000 },
    producer: { '128B': 100_000, '4KiB': 15_000 },
  },
  queueCounts: [100, 1_000],
  growthT: 60,
};

const QUICK: Omit<Args, 'kind' | 'doc' | 'steps'> = {
  reps: 3,
  overheadReps: 2,
  rounds: 10,
  counts: {
    capture: { '128B': 150_000, '4KiB': 20_000 },
    restore: { '128B': 30_000, '4KiB': 10_000 },
    overhead: { '128B': 120_000, '4KiB': 11_000 },
    producer: { '128B': 40_000, '4KiB': 10_000 },
  },
  queueCounts: [100, 1_000],
  growthT: 30,
};

function parseArgs(argv: string[]): Args {
  const args: Args = { kind: 'full', doc: true, steps: new Set(STEPS), ...FULL };
  let custom = false;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--quick') Object.assign(args, { kind: 'quick', ...QUICK });
    else if (arg === '--no-doc') args.doc = false;
    else if (arg === '--only') {
      const names = (argv[++i] ?? '').split(',');
      const unknown = names.filter((n) => !(STEPS as readonly string[]).includes(n));
      if (unknown.length > 0 || names.length === 0) throw new Error(`--only takes ${STEPS.join(',')}; got "${argv[i]}"`);
      args.steps = new Set(names as Step[]);
      custom = true;
    } else if (arg === '--reps') {
      const reps = Number(argv[++i]);
      if (!Number.isSafeInteger(reps) || reps < 1) throw new Error(`--reps takes a positive whole number; got "${argv[i]}"`);
      args.reps = reps;
      custom = true;
    } else throw new Error(`unknown argument ${arg}; ${USAGE}`);
  }
  // --reps applies after --quick whatever the order.
  const reps = argv.includes('--reps') ? Number(argv[argv.indexOf('--reps') + 1]) : undefined;
  if (reps !== undefined) Object.assign(args, { reps, overheadReps: reps });
  if (args.steps.has('restore')) args.steps.add('capture');
  if (custom) args.kind = 'custom';
  return args;
}

async function redisVersion(url: string): Promise<string> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    return /redis_version:(\S+)/.exec(await redis.info('server'))?.[1] ?? 'unknown';
  } finally {
    redis.disconnect();
  }
}

/** A vhost and a Redis namespace of a step's own, removed when the step ends (`done`) or the bench stops. */
async function benchVhost(ctx: BenchContext, vhostPrefix: string, namespacePrefix: string) {
  const { services } = ctx;
  const vhost = uniqueName(vhostPrefix);
  const namespace = uniqueName(namespacePrefix);
  const redis = new Redis(services.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
  const done = ctx.cleanUps.add(`vhost ${vhost} and Redis keys ${namespace}:*`, async () => {
    redis.disconnect();
    await removeVhost(services.managementUrl, vhost);
    await forgetNamespace(services.redisUrl, namespace);
  });
  await redis.connect();
  await createTestVhost(services.managementUrl, vhost);
  return { vhost, namespace, redis, url: amqpUrlForVhost(services.amqpUrl, vhost), done };
}

/** Steps 1 and 2: capture and restore against one vhost of streams, one size at a time. */
async function captureAndRestore(ctx: BenchContext, args: Args, ratios: Ratio[]): Promise<void> {
  const { vhost, namespace, redis, url, done } = await benchVhost(ctx, 'tm-bench', 'tmbench');
  for (const size of SIZES) {
    const captured = await measureCapture(ctx, url, namespace, size).then(
      ({ ratio, captured }) => (ratios.push(ratio), console.log(ratioLine(ratio)), captured),
      (err: unknown) => (ratios.push(failedRatio('capture_efficiency', size.label, err)), undefined),
    );
    if (!args.steps.has('restore')) continue;
    const ratio = captured
      ? await measureRestore(ctx, { url, vhost }, size, captured, redis, namespace).catch((err: unknown) => failedRatio('restore_efficiency', size.label, err))
      : failedRatio('restore_efficiency', size.label, new Error('no capture to restore from'));
    ratios.push(ratio);
    console.log(ratioLine(ratio));
  }
  await done();
}

/** Encryption's cost: capture and restore with a master key ÷ without, on a vhost of its own. */
async function encryption(ctx: BenchContext, ratios: Ratio[]): Promise<void> {
  const { vhost, namespace, redis, url, done } = await benchVhost(ctx, 'tm-bench-enc', 'tmbenchenc');
  for (const size of SIZES) {
    const measured = await measureEncryption(ctx, { url, vhost }, namespace, size, redis).catch((err: unknown) => ['capture', 'restore'].map((what) => failedRatio('encryption_cost', `${what}-${size.label}`, err)));
    for (const ratio of measured) {
      ratios.push(ratio);
      console.log(ratioLine(ratio));
    }
  }
  await done();
}

/** Steps 3 and 5 on one cluster: producer impact first (steady state), then round overhead (restarts). */
async function onCluster(ctx: BenchContext, args: Args, ratios: Ratio[]): Promise<void> {
  const pc = await startProtectedCluster(ctx);
  const before = ratios.length;
  try {
    const record = (ratio: Ratio) => (ratios.push(ratio), console.log(ratioLine(ratio)));
    if (args.steps.has('producer')) {
      for (const size of SIZES) record(await measureProducerImpact(ctx, pc, size).catch((err: unknown) => failedRatio('producer_impact', size.label, err)));
    }
    if (args.steps.has('overhead')) {
      for (const size of SIZES) record(await measureRoundOverhead(ctx, pc, size, args.overheadReps).catch((err: unknown) => failedRatio('round_overhead', size.label, err)));
    }
  } finally {
    await pc.close(ratios.slice(before).some((r) => r.error));
  }
}

const ORDER: Ratio['name'][] = ['capture_efficiency', 'restore_efficiency', 'round_overhead', 'round_p99_over_floor', 'producer_impact', 'store_growth', 'encryption_cost'];

function table(ratios: Ratio[]): string {
  const rows = ['| figure | at | ratio | target | met |', '|---|---|---:|---|---|'];
  for (const r of ratios) {
    const verdict = r.error ? 'not measured' : r.target ? (met(r) ? 'yes' : '**no**') : '-';
    rows.push(`| ${r.name.replace(/_/g, ' ')} | ${r.label} | ${Number.isFinite(r.value) ? r.value.toFixed(2) : 'n/a'} | ${r.target ? `${r.target.op} ${r.target.value}` : 'none'} | ${verdict} |`);
  }
  return rows.join('\n');
}

/** Replaces this run kind's section of BENCHMARKS.md (between its markers), or appends one. */
function writeDoc(kind: Args['kind'], command: string, machine: string, ratios: Ratio[], minutes: number): string {
  const path = join(repositoryRoot(), 'BENCHMARKS.md');
  const title = kind === 'full' ? 'Full run' : kind === 'quick' ? 'Quick run' : 'Custom run';
  const body = [`### ${title}: \`${command}\``, '', `${machine} · took ${minutes.toFixed(1)} min`, '', table(ratios), '', '```text', ...ratios.map(ratioLine), '```'];
  replaceDocSection(path, `bench ${kind}`, body, '# Benchmarks\n\nWritten by `npm run bench`.\n');
  return path;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const services = servicesFromEnv();
  const cleanUps = new CleanUps();
  const interrupt = (signal: NodeJS.Signals) => {
    log(`${signal}: cleaning up`);
    // The step still running fails as its vhost goes away: that must not end the clean-up.
    process.on('uncaughtException', (err) => log(`while cleaning up: ${err.message}`));
    process.on('unhandledRejection', (err) => log(`while cleaning up: ${(err as Error)?.message ?? String(err)}`));
    void cleanUps.runAll().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);

  const [overview, redis] = await Promise.all([new ManagementClient(services.managementUrl).overview(), redisVersion(services.redisUrl)]);
  const started = new Date();
  const machine =
    `${started.toISOString().slice(0, 16).replace('T', ' ')} UTC · ${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'unknown CPU'}), ` +
    `${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM · Node ${process.versions.node} · RabbitMQ ${overview.rabbitmqVersion} · Redis ${redis} · ` +
    `load average ${loadavg()[0].toFixed(2)} at start · ${args.reps} reps after a warm-up (round overhead ${args.overheadReps}), ${args.rounds} rounds per queue count`;
  log(machine);
  const ctx: BenchContext = { services, reps: args.reps, counts: args.counts, rounds: args.rounds, defaults: workerDefaults(), cleanUps };
  const ratios: Ratio[] = [];
  try {
    if (args.steps.has('capture')) await captureAndRestore(ctx, args, ratios);
    if (args.steps.has('producer') || args.steps.has('overhead')) await onCluster(ctx, args, ratios);
    if (args.steps.has('latency')) {
      for (const queues of args.queueCounts) {
        const ratio = await measureRoundLatency(ctx, queues).catch((err: unknown) => failedRatio('round_p99_over_floor', `${queues}q`, err));
        ratios.push(ratio);
        console.log(ratioLine(ratio));
      }
    }
    if (args.steps.has('encryption')) await encryption(ctx, ratios);
    if (args.steps.has('growth')) {
      const growth = await measureStoreGrowth(ctx, { t: args.growthT }).catch((err: unknown) =>
        ['store_bytes', 'manifest_bytes', 'restore_ms'].map((label) => failedRatio('store_growth', label, err)),
      );
      for (const ratio of growth) {
        ratios.push(ratio);
        console.log(ratioLine(ratio));
      }
    }
  } finally {
    await cleanUps.runAll();
  }
  ratios.sort((a, b) => ORDER.indexOf(a.name) - ORDER.indexOf(b.name));
  console.log(`\n${ratios.map(ratioLine).join('\n')}\n`);
  const minutes = (Date.now() - started.getTime()) / 60_000;
  log(`done in ${minutes.toFixed(1)} min`);
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  if (args.doc) log(`results written to ${writeDoc(args.kind, command, machine, ratios, minutes)}`);
  return ratios.every((r) => !r.error) ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    console.log(`bench failed: ${(err as Error).message}`);
    process.exit(1);
  },
);
