/**
 * The service commands: `coordinator` and `worker` start a service in this process and run it
 * until SIGINT/SIGTERM; `cluster up` starts a coordinator and N workers as child processes.
 */
import { constants } from 'node:os';
import type { Command } from 'commander';
import { ConfigError, createLogger, type Logger, StoppingError } from '../../core/index.js';
import { clusterUp } from '../cluster.js';
import type { CliContext } from '../context.js';
import { EXIT_FAILED, ExitCode } from '../exit-codes.js';

function serviceFlags(command: Command): Command {
  return command
    .option('--amqp-url <url>', 'protected broker (TIDEMARK_AMQP_URL)')
    .option('--management-url <url>', 'management API (TIDEMARK_MANAGEMENT_URL)')
    .option('--redis-url <url>', 'Redis (TIDEMARK_REDIS_URL)')
    .option('--store <url>', 's3://bucket/prefix or file:///dir (TIDEMARK_STORE)')
    .option('--s3-endpoint <url>', 'S3 endpoint (TIDEMARK_S3_ENDPOINT)')
    .option('--namespace <name>', 'prefix of Tidemark-owned objects (TIDEMARK_NAMESPACE)')
    .option('--id <id>', 'this process id (TIDEMARK_ID)')
    .option('--listen <host:port>', 'address to serve gRPC on')
    .option('--health-listen <host:port>', 'also serve only gRPC health, in plaintext, on this address, e.g. 0.0.0.0:7710 (TIDEMARK_HEALTH_LISTEN)');
}

/**
 * The longest a service takes to exit after SIGINT/SIGTERM, whatever it is doing (starting,
 * leading a round, capturing, restoring). Past it the process exits anyway with code 1 and logs
 * what it was still waiting for.
 */
const STOP_LIMIT_MS = 10_000;

/**
 * Starts a service and runs it until SIGINT/SIGTERM, then stops it cleanly and exits 0. The
 * handlers are installed before the service starts: a signal while it starts (waiting for Redis,
 * the store, the lease) aborts `start`'s signal, and the startup gives up and closes what it had
 * opened. The stop is bounded by STOP_LIMIT_MS; a second signal exits at once (128 + its number).
 */
async function runService(log: Logger, start: (signal: AbortSignal) => Promise<{ stop(): Promise<void> }>): Promise<void> {
  const controller = new AbortController();
  let received: { signal: NodeJS.Signals; atMs: number } | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (received) {
      log.warn('signal received again: exiting now, without finishing the stop', { signal });
      process.exit(128 + constants.signals[signal]);
    }
    received = { signal, atMs: Date.now() };
    log.info('signal received: stopping (a second signal exits at once)', { signal, limitMs: STOP_LIMIT_MS });
    // Unref'd: it fires only if something still holds the process, and then ends it.
    setTimeout(() => {
      log.error('still running at the stop limit: exiting anyway', { signal, limitMs: STOP_LIMIT_MS, stillOpen: process.getActiveResourcesInfo() });
      process.exit(EXIT_FAILED);
    }, STOP_LIMIT_MS).unref();
    controller.abort(new StoppingError(`${signal} received`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let running: { stop(): Promise<void> } | undefined;
  try {
    running = await start(controller.signal);
  } catch (err) {
    if (!received) throw err;
    // start() closed what it had opened before rejecting.
  }
  if (running) {
    if (!received) await new Promise((resolve) => controller.signal.addEventListener('abort', resolve, { once: true }));
    await running.stop();
  }
  log.info(running ? 'stopped' : 'stopped while starting', { signal: received!.signal, durationMs: Date.now() - received!.atMs });
}

export function addServiceCommands(program: Command, cli: CliContext): void {
  serviceFlags(program.command('coordinator').description('start a coordinator (leader-elected; standbys may run)'))
    .option('--protect <patterns>', 'queues to protect: vhost:glob,!vhost:glob (TIDEMARK_PROTECT)')
    .option('--interval <duration>', 'time between scheduled checkpoints, 0 for none (TIDEMARK_INTERVAL)')
    .option('--prepare-timeout <duration>', 'prepare deadline of a round (TIDEMARK_PREPARE_TIMEOUT)')
    .option('--status-listen <host:port>', 'serve the status page here (TIDEMARK_STATUS_LISTEN); off unless set')
    .option('--advertise <host:port>', 'address clients reach this coordinator at, which standbys point them to when it leads (TIDEMARK_ADVERTISE)')
    .action(async (flags) => {
      const cfg = cli.config(flags);
      const log = createLogger('coordinator', { level: cfg.logLevel, format: cfg.logFormat, fields: { coordinator: cfg.id } });
      await runService(log, async (signal) => (await import('../../coordinator/index.js')).startCoordinator(cfg, log, signal));
    });

  serviceFlags(program.command('worker').description('start a worker (captures journals, runs restore tasks)'))
    .option('--advertise <host:port>', 'address the coordinator reaches this worker at (TIDEMARK_ADVERTISE)')
    .action(async (flags) => {
      const cfg = cli.config(flags);
      const log = createLogger('worker', { level: cfg.logLevel, format: cfg.logFormat, fields: { worker: cfg.id } });
      await runService(log, async (signal) => (await import('../../worker/index.js')).startWorker(cfg, log, signal));
    });

  const cluster = program.command('cluster').description('a local cluster for development and demos');
  serviceFlags(cluster.command('up').description('start a coordinator and N workers as separate processes'))
    .option('--workers <n>', 'number of workers', '3')
    .option('--protect <patterns>', 'queues to protect (TIDEMARK_PROTECT)')
    .option('--interval <duration>', 'time between scheduled checkpoints (TIDEMARK_INTERVAL)')
    .option('--port <port>', 'coordinator port (default: the port of TIDEMARK_COORDINATOR, else 7700)')
    .option('--status-listen <host:port>', 'status page address (TIDEMARK_STATUS_LISTEN; default 127.0.0.1:7780, or a free loopback port)')
    .action(async (flags) => {
      const workers = Number(flags.workers);
      if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new ConfigError(`--workers must be a whole number from 1 to 64, not "${flags.workers}"`);
      const { workers: _w, port: portFlag, ...rest } = flags;
      const cfg = cli.config(rest);
      const port = Number(portFlag ?? cfg.coordinator.split(':').pop() ?? 7700);
      if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new ConfigError(`--port must be a TCP port, not "${portFlag}"`);
      const code = await clusterUp({ config: cfg, workers, port });
      if (code !== 0) throw new ExitCode(EXIT_FAILED);
    });
}
