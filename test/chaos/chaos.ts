/**
 * `npm run chaos`: a real Tidemark cluster under causal publishing while workers and the leader
 * are SIGKILLed, RabbitMQ, Redis and the S3 server restart, and a worker's link to the
 * coordinators is cut; then the latest checkpoint is restored and the whole history checked.
 *
 * Usage: node dist/test/chaos/chaos.js [--quick] [--seed N] [--faults a,b,...] [--hold SECONDS]
 *   --quick   one pass over the faults with 3 s holds (the default: two passes, 5 s holds)
 *   --seed N  fault order and victims (printed at the start, so a run can be replayed)
 *   --faults  the fault kinds to use (default: all but the optional journal-delete; see faults.ts)
 *   --hold    how long each fault lasts before it is healed
 *
 * RabbitMQ is taken from TIDEMARK_TEST_AMQP_URL / TIDEMARK_TEST_MANAGEMENT_URL, else
 * localhost:5672 / localhost:15672 as guest. Its restart uses rabbitmqctl, so the broker must be
 * this machine's and nobody else should be using it during the run. Redis and the S3 server are
 * the run's own child processes.
 *
 * The last line is `lost=N duplicated=N unexpected=N reordered=N causal=N committed=N aborted=N
 * recover_s=X`; the exit code is 0 only when the five counters are 0, every fault was followed by
 * a committed round, and no process died on its own.
 */
import { ChaosRun, passed, summaryLine } from './chaos-run.js';
import { ALL_FAULTS, OPTIONAL_FAULTS, faultSchedule, isFaultKind, seededRandom, type FaultKind } from './faults.js';

interface Args {
  quick: boolean;
  seed: number;
  faults: FaultKind[];
  holdMs?: number;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { quick: false, seed: Math.floor(Math.random() * 1_000_000), faults: [...ALL_FAULTS] };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--quick') args.quick = true;
    else if (arg === '--seed') {
      args.seed = Number(argv[++i]);
      if (!Number.isSafeInteger(args.seed)) throw new Error(`--seed needs a whole number, not "${argv[i]}"`);
    } else if (arg === '--hold') {
      args.holdMs = Number(argv[++i]) * 1_000;
      if (!(args.holdMs > 0)) throw new Error(`--hold needs a number of seconds, not "${argv[i]}"`);
    } else if (arg === '--faults') {
      const kinds = (argv[++i] ?? '').split(',').filter((k) => k !== '');
      const bad = kinds.filter((k) => !isFaultKind(k));
      if (kinds.length === 0 || bad.length > 0) throw new Error(`--faults takes a comma-separated list of ${[...ALL_FAULTS, ...OPTIONAL_FAULTS].join(', ')}; got "${argv[i]}"`);
      args.faults = kinds as FaultKind[];
    } else throw new Error(`unknown argument ${arg}; usage: chaos [--quick] [--seed N] [--faults a,b,...] [--hold SECONDS]`);
  }
  return args;
}

const env = (name: string) => (process.env[name] === '' ? undefined : process.env[name]);

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const random = seededRandom(args.seed);
  const schedule = faultSchedule(args.faults, args.quick ? 1 : 2, random);
  const log = (line: string) => console.log(`[chaos ${new Date().toISOString().slice(11, 23)}] ${line}`);
  log(`seed ${args.seed}${args.quick ? ' (quick)' : ''}; faults: ${schedule.join(', ')}`);
  const run = new ChaosRun({
    amqpUrl: env('TIDEMARK_TEST_AMQP_URL') ?? 'amqp://guest:guest@localhost:5672',
    managementUrl: env('TIDEMARK_TEST_MANAGEMENT_URL') ?? 'http://guest:guest@localhost:15672',
    schedule,
    random,
    holdMs: args.holdMs ?? (args.quick ? 3_000 : 5_000),
    settleMs: args.quick ? 1_000 : 3_000,
    recoveryTimeoutMs: 60_000,
    log,
  });
  const interrupt = (signal: NodeJS.Signals) => {
    log(`${signal}: cleaning up`);
    void run.cleanUp().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  let report;
  try {
    report = await run.run();
  } catch (err) {
    log(`run failed: ${(err as Error).stack ?? String(err)}`);
    console.log(`chaos run failed (seed ${args.seed}): ${(err as Error).message}`);
    return 1;
  }
  for (const f of report.faults) {
    log(`  ${f.kind.padEnd(16)} ${f.target.padEnd(28)} ${f.recoverS === undefined ? 'NO COMMIT' : `recover_s=${f.recoverS.toFixed(1)} (checkpoint ${f.epoch})`}`);
  }
  for (const c of report.verdict.checkpoints) {
    log(`  checkpoint ${String(c.epoch).padStart(4)} ${c.label.padEnd(26)} ${c.restored} messages${c.examples.length > 0 ? `: ${c.examples.join('; ')}` : ''}`);
  }
  log(`history: ${report.verdict.attempts} publishes, ${report.verdict.confirmed} confirmed, ${report.verdict.unknown} unknown, ${report.verdict.pairs} causal pairs`);
  for (const [reason, n] of report.abortReasons.slice(0, 12)) log(`  aborted x${n}: ${reason}`);
  for (const [line, n] of report.errorLines.slice(0, 12)) log(`  error x${n}: ${line}`);
  for (const note of report.notes) log(`note: ${note}`);
  for (const problem of report.problems) log(`PROBLEM: ${problem}`);
  log(`cluster log: ${report.logFile}; seed ${args.seed}; ${passed(report) ? 'PASSED' : 'FAILED'}`);
  console.log(summaryLine(report));
  return passed(report) ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    console.log(`chaos run failed: ${(err as Error).message}`);
    process.exit(1);
  },
);
