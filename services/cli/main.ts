/**
 * The tidemark command line. Service commands (coordinator, worker, cluster up) start processes;
 * every other command talks to the coordinator over gRPC. Data goes to stdout (--json for the
 * stable machine-readable form), logs and errors to stderr.
 *
 * Exit codes: 0 success; 1 failure; 2 bad usage or configuration; 3 a checkpoint round aborted,
 * a restore finished with failed queues (or a dry run found conflicts), verify found problems, or
 * a drill did not reconcile; 130 interrupted (Ctrl-C).
 *
 * Services (coordinator, worker) stop cleanly on SIGINT/SIGTERM at any moment, also while they
 * start, and exit 0; see runService for the time limit and the second signal.
 */
import { constants } from 'node:os';
import { Command, Option } from 'commander';
import {
  type Config,
  ConfigError,
  createLogger,
  errorMessage,
  FailedPreconditionError,
  loadConfig,
  type Logger,
  StoppingError,
  storedSegmentCount,
  TidemarkError,
} from '../core/index.js';
import { TidemarkClient } from '../client/index.js';
import { RoundOutcome, type RestoreEvent, type RestoreRequest } from '../gen/tidemark/v1/admin.js';
import { bytes, checkpointJson, manifestJson, outcomeName, restoreEventJson, restoreSummaryJson, statusJson, summaryJson, table } from './output.js';
import { clusterUp } from './cluster.js';
import { renderRestore } from './restore-view.js';
import { renderVerify } from './verify-view.js';
import { renderDrill } from './drill-view.js';

const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
const EXIT_INCOMPLETE = 3;
/** Ctrl-C, as shells report it (128 + SIGINT). */
const EXIT_INTERRUPTED = 130;

class ExitCode extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

const program = new Command('tidemark')
  .description('Online, consistent, point-in-time backups of RabbitMQ queues')
  .option('--config <file>', 'JSON config file (overrides TIDEMARK_* variables; flags override it)')
  .option('--coordinator <host:port>', 'coordinator address (TIDEMARK_COORDINATOR)')
  .option('--log-level <level>', 'debug, info, warn or error (TIDEMARK_LOG_LEVEL)')
  .showHelpAfterError()
  .exitOverride();

function config(flags: Record<string, unknown> = {}): Config {
  const globals = program.opts<{ config?: string; coordinator?: string; logLevel?: string }>();
  return loadConfig({ env: process.env, file: globals.config, flags: { coordinator: globals.coordinator, logLevel: globals.logLevel, ...flags } });
}

function client(): TidemarkClient {
  return new TidemarkClient(config().coordinator);
}

const print = (value: unknown): void => void process.stdout.write(`${typeof value === 'string' ? value : JSON.stringify(value)}\n`);
const printJson = (value: unknown): void => void process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);

function serviceFlags(command: Command): Command {
  return command
    .option('--amqp-url <url>', 'protected broker (TIDEMARK_AMQP_URL)')
    .option('--management-url <url>', 'management API (TIDEMARK_MANAGEMENT_URL)')
    .option('--redis-url <url>', 'Redis (TIDEMARK_REDIS_URL)')
    .option('--store <url>', 's3://bucket/prefix or file:///dir (TIDEMARK_STORE)')
    .option('--s3-endpoint <url>', 'S3 endpoint (TIDEMARK_S3_ENDPOINT)')
    .option('--namespace <name>', 'prefix of Tidemark-owned objects (TIDEMARK_NAMESPACE)')
    .option('--id <id>', 'this process id (TIDEMARK_ID)')
    .option('--listen <host:port>', 'address to serve gRPC on');
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
      log.warn(`${signal} received again: exiting now, without finishing the stop`);
      process.exit(128 + constants.signals[signal]);
    }
    received = { signal, atMs: Date.now() };
    log.info(`${signal} received: stopping (at most ${STOP_LIMIT_MS / 1000} s; a second signal exits at once)`);
    // Unref'd: it fires only if something still holds the process, and then ends it.
    setTimeout(() => {
      log.error(`still running ${STOP_LIMIT_MS / 1000} s after ${signal}: exiting anyway; still open: ${process.getActiveResourcesInfo().join(', ') || 'nothing'}`);
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
  log.info(`stopped after ${received!.signal}${running ? '' : ' while starting'} in ${Date.now() - received!.atMs} ms`);
}

serviceFlags(program.command('coordinator').description('start a coordinator (leader-elected; standbys may run)'))
  .option('--protect <patterns>', 'queues to protect: vhost:glob,!vhost:glob (TIDEMARK_PROTECT)')
  .option('--interval <duration>', 'time between scheduled checkpoints, 0 for none (TIDEMARK_INTERVAL)')
  .option('--prepare-timeout <duration>', 'prepare deadline of a round (TIDEMARK_PREPARE_TIMEOUT)')
  .action(async (flags) => {
    const cfg = config(flags);
    const log = createLogger(`coordinator ${cfg.id}`, cfg.logLevel);
    await runService(log, async (signal) => (await import('../coordinator/index.js')).startCoordinator(cfg, log, signal));
  });

serviceFlags(program.command('worker').description('start a worker (captures journals, runs restore tasks)'))
  .option('--advertise <host:port>', 'address the coordinator reaches this worker at')
  .action(async (flags) => {
    const cfg = config(flags);
    const log = createLogger(`worker ${cfg.id}`, cfg.logLevel);
    await runService(log, async (signal) => (await import('../worker/index.js')).startWorker(cfg, log, signal));
  });

const cluster = program.command('cluster').description('a local cluster for development and demos');
serviceFlags(cluster.command('up').description('start a coordinator and N workers as separate processes'))
  .option('--workers <n>', 'number of workers', '3')
  .option('--protect <patterns>', 'queues to protect (TIDEMARK_PROTECT)')
  .option('--interval <duration>', 'time between scheduled checkpoints (TIDEMARK_INTERVAL)')
  .option('--port <port>', 'coordinator port (default: the port of TIDEMARK_COORDINATOR, else 7700)')
  .action(async (flags) => {
    const workers = Number(flags.workers);
    if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new ConfigError(`--workers must be a whole number from 1 to 64, not "${flags.workers}"`);
    const { workers: _w, port: portFlag, ...rest } = flags;
    const cfg = config(rest);
    const port = Number(portFlag ?? cfg.coordinator.split(':').pop() ?? 7700);
    if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new ConfigError(`--port must be a TCP port, not "${portFlag}"`);
    const code = await clusterUp({ config: cfg, workers, port });
    if (code !== 0) throw new ExitCode(EXIT_FAILED);
  });

program
  .command('checkpoint')
  .description('take a checkpoint now')
  .option('--wait', 'wait until the round is decided')
  .option('--json', 'print JSON')
  .action(async (flags) => {
    const c = client();
    try {
      const reply = await c.checkpoint(Boolean(flags.wait));
      if (flags.json) printJson(checkpointJson(reply));
      else if (reply.outcome === RoundOutcome.ROUND_OUTCOME_COMMITTED) print(`checkpoint ${reply.epoch} committed in ${reply.durationMs} ms`);
      else if (reply.outcome === RoundOutcome.ROUND_OUTCOME_PENDING && !flags.wait) print(`checkpoint ${reply.epoch} started`);
      else if (reply.outcome === RoundOutcome.ROUND_OUTCOME_PENDING) {
        // COMMIT was decided but this leader could not make it visible; the next leader settles it.
        process.stderr.write(`tidemark: checkpoint ${reply.epoch} is in doubt: ${reply.reason}; the next leader finishes or aborts it\n`);
      } else process.stderr.write(`tidemark: checkpoint ${reply.epoch} ${outcomeName(reply.outcome)}: ${reply.reason}\n`);
      const settled = reply.outcome === RoundOutcome.ROUND_OUTCOME_COMMITTED || (reply.outcome === RoundOutcome.ROUND_OUTCOME_PENDING && !flags.wait);
      if (!settled) throw new ExitCode(EXIT_INCOMPLETE);
    } finally {
      c.close();
    }
  });

const checkpoints = program.command('checkpoints').description('the catalog of visible checkpoints');
checkpoints
  .command('list')
  .description('list visible checkpoints, oldest first')
  .option('--json', 'print JSON')
  .action(async (flags) => {
    const c = client();
    try {
      const list = await c.listCheckpoints();
      if (flags.json) return printJson({ checkpoints: list.map(summaryJson) });
      if (list.length === 0) return print('no checkpoints yet');
      print(
        table([
          ['ID', 'COMMITTED', 'QUEUES', 'MESSAGES', 'SIZE', 'KIND', 'INCOMPLETE'],
          ...list.map((s) => [
            String(s.epoch),
            new Date(s.committedAtMs).toISOString(),
            String(s.queues),
            String(s.messages),
            bytes(s.bodyBytes),
            s.full ? 'full' : `incremental on ${s.parentEpoch}`,
            s.incompleteQueues > 0 ? `${s.incompleteQueues} queue(s)` : '-',
          ]),
        ]),
      );
    } finally {
      c.close();
    }
  });
checkpoints
  .command('show <id>')
  .description('show one checkpoint (an id or "latest")')
  .option('--json', 'print JSON')
  .action(async (id: string, flags) => {
    const c = client();
    try {
      const m = await c.getCheckpoint(id);
      if (flags.json) return printJson(manifestJson(m));
      print(`checkpoint ${m.epoch} committed ${new Date(m.committedAtMs).toISOString()} (${m.full ? 'full' : `incremental on ${m.parentEpoch}`}), ${m.messages} messages, ${bytes(m.bodyBytes)}`);
      print(
        table([
          ['VHOST', 'QUEUE', 'TYPE', 'MESSAGES', 'SIZE', 'CUT', 'SEGMENTS', 'STATE'],
          ...m.queues.map((q) => [
            q.definition!.vhost,
            q.definition!.name,
            q.definition!.type,
            String(q.messages),
            bytes(q.bodyBytes),
            String(q.cutOffset),
            String(storedSegmentCount(q.segments)),
            q.incomplete.length > 0 ? 'POSSIBLY INCOMPLETE' : 'complete',
          ]),
        ]),
      );
      const marked = m.queues.filter((q) => q.incomplete.length > 0);
      if (marked.length > 0) {
        print(`POSSIBLY INCOMPLETE: ${marked.length} queue(s) may lack messages the broker confirmed (docs/OPERATIONS.md#possibly-incomplete-queues):`);
        for (const q of marked) {
          for (const mark of q.incomplete) print(`  ${q.definition!.vhost}/${q.definition!.name}: after offset ${mark.afterOffset}, marked in checkpoint ${mark.epoch}: ${mark.reason}`);
        }
      }
    } finally {
      c.close();
    }
  });

program
  .command('status')
  .description('coordinator, workers, protected queues and the latest checkpoint')
  .option('--json', 'print JSON')
  .action(async (flags) => {
    const c = client();
    try {
      const s = await c.status();
      if (flags.json) return printJson(statusJson(s));
      const j = statusJson(s);
      print(`coordinator ${j.coordinator} (${j.leader ? 'leader' : 'standby'}, token ${j.leaderToken}), store ${j.store}`);
      print(`protected queues: ${j.protectedQueues}; latest checkpoint: ${j.latestCheckpoint ? `${j.latestCheckpoint.id} at ${j.latestCheckpoint.committedAt}` : 'none'}`);
      print(`rounds: ${j.rounds.committed} committed, ${j.rounds.aborted} aborted${j.lastRound ? `; last ${j.lastRound.epoch} ${j.lastRound.outcome}${j.lastRound.reason ? `: ${j.lastRound.reason}` : ''}` : ''}`);
      if (j.journalBoundBytes) print(`journal retention: each journal keeps at most ${bytes(j.journalBoundBytes)}`);
      if (j.journalPressure) print(`DISK PRESSURE: ${j.journalPressure}; journals are shrunk, then the largest are no longer protected (docs/OPERATIONS.md#journal-retention)`);
      print(
        j.workers.length === 0
          ? 'workers: none'
          : table([
              ['WORKER', 'ADDRESS', 'QUEUES', 'HEALTH'],
              ...j.workers.map((w) => [w.id, w.address, String(w.queues), w.error ? w.error : w.reachable ? 'ok' : 'unreachable']),
            ]),
      );
      if (j.coverageGaps.length > 0) {
        print(`COVERAGE GAPS: ${j.coverageGaps.length} queue(s) receive messages their journals do not (see REASON); checkpoints do not hold them`);
        print(
          table([
            ['VHOST', 'QUEUE', 'PUBLISHED', 'CAPTURED', 'UNCAPTURED', 'SINCE', 'REASON'],
            ...j.coverageGaps.map((g) => [g.vhost, g.queue, String(g.sourcePublished), String(g.captured), String(g.uncaptured), g.since ?? '-', g.reason]),
          ]),
        );
      }
      if (j.incompleteQueues.length > 0) {
        print(
          `POSSIBLY INCOMPLETE: the latest checkpoint marks ${j.incompleteQueues.length} queue(s) whose journals may lack messages the broker confirmed; ` +
            'compare them with their source queues before relying on a restore (docs/OPERATIONS.md#possibly-incomplete-queues)',
        );
        print(
          table([
            ['VHOST', 'QUEUE', 'SINCE CHECKPOINT', 'DETECTED', 'MARKS'],
            ...j.incompleteQueues.map((q) => [q.vhost, q.queue, String(q.sinceEpoch), q.detectedAt ?? '', String(q.marks)]),
          ]),
        );
      }
      if (j.firehose.length > 0) {
        print(
          table([
            ['FIREHOSE VHOST', 'RELAYED BY', 'STANDBY', 'BACKLOG'],
            ...j.firehose.map((f) => [f.vhost, f.error ?? f.activeWorker ?? 'nobody (no worker holds its queues?)', f.standbyWorkers.join(',') || '-', String(f.backlog)]),
          ]),
        );
      }
      if (j.unprotectedCount > 0) {
        // One reason per distinct cause: the reasons of one pass repeat for every waiting queue.
        const reasons = [...new Set(j.unprotected.map((u) => u.reason))];
        print(`NOT PROTECTED: ${j.unprotectedCount} selected queue(s) have no journal and no checkpoints (the broker has no room): ${reasons.join('; ')}`);
        print(
          table([
            ['VHOST', 'QUEUE'],
            ...j.unprotected.map((u) => [u.vhost, u.queue]),
            ...(j.unprotectedCount > j.unprotected.length ? [['...', `and ${j.unprotectedCount - j.unprotected.length} more`]] : []),
          ]),
        );
      }
      if (j.leader && j.coverageUnchecked > 0) {
        // A leader of an older version does not say how long (0): the sentence then says "a while".
        const idle = s.coverageSettleMs > 0 ? `${s.coverageSettleMs / 1000} s` : 'a while';
        print(`coverage: ${j.coverageUnchecked} queue(s) not checked yet (a queue is checked once it has been idle for ${idle} since this leader began watching)`);
      }
    } finally {
      c.close();
    }
  });

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** How long `restore` keeps trying to follow its restore after losing the coordinator. */
const RECONNECT_FOR_MS = 120_000;

/**
 * Follows a restore's events. If the coordinator goes away mid-restore (a crash, a leader change)
 * the restore goes on in the cluster: this reconnects and follows it again (ResumeRestore), for up
 * to RECONNECT_FOR_MS, instead of leaving the operator with a broken stream.
 */
async function* followRestore(c: TidemarkClient, events: AsyncIterable<RestoreEvent>, signal: AbortSignal, onId: (id: string) => void): AsyncGenerator<RestoreEvent> {
  let id = '';
  let lostAt = 0;
  for (;;) {
    try {
      for await (const event of events) {
        lostAt = 0;
        if (event.event?.$case === 'plan' && !id) onId((id = event.event.value.restoreId));
        yield event;
        if (event.event?.$case === 'done') return;
      }
      return;
    } catch (err) {
      const retryable = err instanceof FailedPreconditionError || (err instanceof TidemarkError && err.retryable);
      if (!id || signal.aborted || !retryable) throw err;
      lostAt ||= Date.now();
      if (Date.now() - lostAt > RECONNECT_FOR_MS) {
        throw new TidemarkError(`${errorMessage(err)}; restore ${id} may still be running: follow it with "tidemark restore resume ${id}"`, { cause: err });
      }
      process.stderr.write(`tidemark: lost the coordinator (${errorMessage(err)}); reconnecting to follow restore ${id}\n`);
      await new Promise((r) => setTimeout(r, 1_000));
      events = c.resumeRestore(id, signal);
    }
  }
}

/**
 * Shows a restore to its end. Ctrl-C cancels it in the cluster (it can be resumed later); the
 * restore survives this process dying any other way.
 */
async function showRestore(c: TidemarkClient, open: (signal: AbortSignal) => AsyncIterable<RestoreEvent>, json: boolean): Promise<void> {
  const controller = new AbortController();
  let id = '';
  let conflicts = 0;
  const interrupted = new Promise<void>((resolve) => process.once('SIGINT', () => resolve())).then(async () => {
    controller.abort(new TidemarkError('restore interrupted'));
    if (!id) return;
    const state = await c.cancelRestore(id).catch((err) => `not cancelled (${errorMessage(err)})`);
    process.stderr.write(`tidemark: restore ${id} ${state}; continue it with "tidemark restore resume ${id}"\n`);
  });
  const events = followRestore(c, open(controller.signal), controller.signal, (restoreId) => (id = restoreId));
  const counted = (async function* () {
    for await (const event of events) {
      if (event.event?.$case === 'plan' && event.event.value.dryRun) conflicts = event.event.value.queues.filter((q) => q.conflict !== '').length;
      yield event;
    }
  })();
  try {
    const failed = await renderRestore(counted, { json, print, toJson: restoreEventJson });
    if (failed > 0 || conflicts > 0) throw new ExitCode(EXIT_INCOMPLETE);
  } catch (err) {
    if (controller.signal.aborted) {
      await interrupted;
      throw new ExitCode(EXIT_INTERRUPTED);
    }
    throw err;
  }
}

const restoreCommand = program
  .command('restore')
  .description('restore queues from a checkpoint (subcommands: resume, cancel, list)')
  .option('--checkpoint <id>', 'checkpoint id or "latest"')
  .option('--at <time>', 'the latest checkpoint committed at or before this time: ISO-8601, or relative like -15m, -2h, -1d')
  .option('--queues <glob>', 'queues to restore, "glob" or "vhost:glob", "!" excludes (repeatable)', collect, [])
  .option('--prefix <prefix>', 'prefix restored queue names (queues named by --map keep their mapped name)')
  .option('--map <A=B>', 'restore queue A as B (repeatable; wins over --prefix)', collect, [])
  .addOption(new Option('--mode <mode>', 'recreate (declare from the checkpoint, refuse targets holding messages), append, or refuse (any existing target)').choices(['recreate', 'append', 'refuse']))
  .option('--append', 'same as --mode append')
  .option('--target-vhost <vhost>', 'restore into this vhost')
  .option('--map-vhost <A=B>', 'restore the queues of vhost A into vhost B (repeatable; wins over --target-vhost)', collect, [])
  .option('--target-amqp <url>', 'restore into another broker')
  .addOption(new Option('--bindings <mode>', 'recreate bindings: auto (queues that keep their name), all, none').choices(['auto', 'all', 'none']).default('auto'))
  .option('--no-origin-headers', 'leave out the x-tidemark-origin-* headers')
  .option('--concurrency <n>', 'queues restored at once over all workers (default 4 per worker)')
  .option('--rate <msgs/s>', 'limit the whole restore to this many messages per second')
  .option('--confirm-window <n>', 'unconfirmed messages per queue (default: the workers\' TIDEMARK_CONFIRM_WINDOW)')
  .option('--dry-run', 'print the plan (targets checked, time estimated); publish nothing')
  .option('--json', 'print one JSON event per line')
  .action(async (flags) => {
    if (!flags.checkpoint && !flags.at) throw new ConfigError('say which checkpoint: --checkpoint ID|latest or --at TIME');
    if (flags.checkpoint && flags.at) throw new ConfigError('use either --checkpoint or --at, not both');
    if (flags.append && flags.mode && flags.mode !== 'append') throw new ConfigError(`--append contradicts --mode ${flags.mode}`);
    const pairs = (flag: string, values: string[]) =>
      values.map((m) => {
        const at = m.indexOf('=');
        if (at <= 0 || at === m.length - 1) throw new ConfigError(`${flag} "${m}" must be SOURCE=TARGET`);
        return { from: m.slice(0, at), to: m.slice(at + 1) };
      });
    const map = pairs('--map', flags.map);
    const request: Partial<RestoreRequest> = {
      checkpoint: flags.checkpoint ?? '',
      at: flags.at ?? '',
      queues: flags.queues,
      prefix: flags.prefix ?? '',
      map,
      targetVhost: flags.targetVhost ?? '',
      vhostMap: pairs('--map-vhost', flags.mapVhost),
      targetAmqpUrl: flags.targetAmqp ?? '',
      dryRun: Boolean(flags.dryRun),
      bindings: flags.bindings,
      noOriginHeaders: flags.originHeaders === false,
      append: Boolean(flags.append),
      mode: flags.mode ?? '',
      concurrency: count(flags.concurrency, '--concurrency', 1),
      rateLimit: count(flags.rate, '--rate', 1),
      confirmWindow: count(flags.confirmWindow, '--confirm-window', 1),
    };
    const c = client();
    try {
      await showRestore(c, (signal) => c.restore(request, signal), Boolean(flags.json));
    } finally {
      c.close();
    }
  });

/** A positive whole number flag; 0 when absent. */
function count(value: string | undefined, flag: string, min: number): number {
  if (value === undefined) return 0;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) throw new ConfigError(`${flag} must be a whole number of at least ${min}, not "${value}"`);
  return n;
}

/** `--json` of a restore subcommand: commander gives it to `restore` itself, which declares it too. */
const json = (flags: { json?: boolean }): boolean => Boolean(flags.json || restoreCommand.opts().json);

restoreCommand
  .command('resume <id>')
  .description('follow a restore, continuing it first if it stopped (cancelled, or cut short by a crash)')
  .option('--json', 'print one JSON event per line')
  .action(async (id: string, flags) => {
    const c = client();
    try {
      await showRestore(c, (signal) => c.resumeRestore(id, signal), json(flags));
    } finally {
      c.close();
    }
  });

restoreCommand
  .command('cancel <id>')
  .description('stop a running restore (messages already confirmed stay; resume continues it)')
  .option('--json', 'print JSON')
  .action(async (id: string, flags) => {
    const c = client();
    try {
      const state = await c.cancelRestore(id);
      if (json(flags)) printJson({ restoreId: id, state });
      else print(`restore ${id} ${state}`);
    } finally {
      c.close();
    }
  });

restoreCommand
  .command('list')
  .description('list restores of the last 7 days, newest first')
  .option('--json', 'print JSON')
  .action(async (flags) => {
    const c = client();
    try {
      const restores = await c.listRestores();
      if (json(flags)) return printJson({ restores: restores.map(restoreSummaryJson) });
      const header = ['ID', 'CHECKPOINT', 'STATE', 'CREATED', 'QUEUES', 'DONE', 'FAILED', 'MESSAGES', 'CONFIRMED'];
      const rows = restores.map((r) => [r.restoreId, String(r.checkpoint), r.state, new Date(r.createdAtMs).toISOString(), String(r.queues), String(r.doneQueues), String(r.failedQueues), String(r.messages), String(r.confirmed)]);
      print(restores.length === 0 ? 'no restores in the last 7 days' : table([header, ...rows]));
    } finally {
      c.close();
    }
  });

program
  .command('verify <checkpoint>')
  .description('check a checkpoint: manifest chain, every object present with its checksum; --full decodes every record')
  .option('--full', 'also decode every record and check offsets and counts')
  .option('--json', 'print one JSON event per line')
  .action(async (checkpoint: string, flags) => {
    const c = client();
    const controller = new AbortController();
    process.once('SIGINT', () => controller.abort(new TidemarkError('verify interrupted')));
    try {
      const done = await renderVerify(c.verify(checkpoint, Boolean(flags.full), controller.signal), { json: Boolean(flags.json), print });
      if (!done) throw new TidemarkError('the coordinator ended the verification without a result; run it again');
      if (done.problems > 0) throw new ExitCode(EXIT_INCOMPLETE);
    } finally {
      c.close();
    }
  });

program
  .command('restore-drill <checkpoint>')
  .description('restore into a scratch vhost, reconcile counts and checksums per queue, remove the vhost, report')
  .option('--queues <glob>', 'queues to drill, as for restore (repeatable)', collect, [])
  .option('--json', 'print one JSON event per line')
  .action(async (checkpoint: string, flags) => {
    const c = client();
    const controller = new AbortController();
    process.once('SIGINT', () => controller.abort(new TidemarkError('restore drill interrupted')));
    try {
      const done = await renderDrill(c.restoreDrill(checkpoint, flags.queues, controller.signal), { json: Boolean(flags.json), print });
      if (!done) throw new TidemarkError('the coordinator ended the drill without a result; run it again');
      if (!done.ok) throw new ExitCode(EXIT_INCOMPLETE);
    } finally {
      c.close();
    }
  });

async function run(): Promise<void> {
  // `tidemark ... | head` closes stdout early: that is not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  });
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof ExitCode) process.exitCode = err.code;
    else if ((err as { code?: string }).code?.startsWith('commander.')) {
      const code = (err as { exitCode?: number }).exitCode ?? EXIT_USAGE;
      process.exitCode = code === 0 ? 0 : EXIT_USAGE;
    } else {
      process.stderr.write(`tidemark: ${errorMessage(err)}\n`);
      process.exitCode = err instanceof ConfigError ? EXIT_USAGE : EXIT_FAILED;
    }
  }
}

await run();
