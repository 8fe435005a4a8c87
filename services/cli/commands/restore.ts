/**
 * `restore` (plan and start one, then show it to its end) and its subcommands `resume`, `cancel`
 * and `list`. A restore runs in the cluster: this process only follows it, across coordinator
 * failures (TidemarkClient.followRestore), and Ctrl-C cancels it there.
 */
import { type Command, Option } from 'commander';
import { ConfigError, errorMessage, readTokenFile } from '../../core/index.js';
import type { FollowRestoreFrom, RestoreRequest, TidemarkClient } from '../../client/index.js';
import { collect, type CliContext } from '../context.js';
import { EXIT_INCOMPLETE, EXIT_INTERRUPTED, ExitCode } from '../exit-codes.js';
import { restoreEventJson, restoreSummaryJson, table } from '../output.js';
import { renderRestore } from '../restore-view.js';
import { InterruptedError } from '../errors.js';

/**
 * Shows a restore to its end. Ctrl-C cancels it in the cluster (it can be resumed later); the
 * restore survives this process dying any other way.
 */
async function showRestore(cli: CliContext, c: TidemarkClient, from: FollowRestoreFrom, json: boolean): Promise<void> {
  const controller = new AbortController();
  let id = '';
  let conflicts = 0;
  let onSigint = (): void => {};
  const interrupted = new Promise<void>((resolve) => {
    onSigint = () => resolve();
    process.once('SIGINT', onSigint);
  }).then(async () => {
    controller.abort(new InterruptedError('restore interrupted'));
    if (!id) return;
    const state = await c.cancelRestore(id).catch((err) => `not cancelled (${errorMessage(err)})`);
    cli.warn(`restore ${id} ${state}; continue it with "tidemark restore resume ${id}"`);
  });
  const events = c.followRestore(from, {
    signal: controller.signal,
    onReconnect: (restoreId, err) => cli.warn(`lost the coordinator (${errorMessage(err)}); reconnecting to follow restore ${restoreId}`),
  });
  const counted = (async function* () {
    for await (const event of events) {
      if (event.event?.$case === 'plan') {
        id ||= event.event.value.restoreId;
        if (event.event.value.dryRun) conflicts = event.event.value.queues.filter((q) => q.conflict !== '').length;
      }
      yield event;
    }
  })();
  try {
    const failed = await renderRestore(counted, { json, print: cli.print, toJson: restoreEventJson, out: cli.restoreOutput() });
    if (failed > 0 || conflicts > 0) throw new ExitCode(EXIT_INCOMPLETE);
  } catch (err) {
    if (controller.signal.aborted) {
      await interrupted;
      throw new ExitCode(EXIT_INTERRUPTED);
    }
    throw err;
  } finally {
    // The run is over: a later Ctrl-C is not this restore's (another run may be in this process).
    process.removeListener('SIGINT', onSigint);
  }
}

/**
 * A raw target URL (--target-amqp) with its password from TIDEMARK_TARGET_AMQP_PASSWORD or
 * TIDEMARK_TARGET_AMQP_PASSWORD_FILE: never from argv, which every user of the machine can read.
 */
function rawTargetUrl(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  if (!flag) return '';
  let url: URL;
  try {
    url = new URL(flag);
  } catch {
    throw new ConfigError('--target-amqp must be an amqp:// or amqps:// URL, e.g. amqp://user@host:5672 (the password in TIDEMARK_TARGET_AMQP_PASSWORD); nothing was restored');
  }
  if (url.password) {
    throw new ConfigError(
      '--target-amqp holds a password, which would be visible in the process list: give the URL without it and the password in TIDEMARK_TARGET_AMQP_PASSWORD or TIDEMARK_TARGET_AMQP_PASSWORD_FILE; nothing was restored',
    );
  }
  let password = env.TIDEMARK_TARGET_AMQP_PASSWORD;
  if (!password && env.TIDEMARK_TARGET_AMQP_PASSWORD_FILE) password = readTokenFile(env.TIDEMARK_TARGET_AMQP_PASSWORD_FILE, 'TIDEMARK_TARGET_AMQP_PASSWORD_FILE');
  if (password) url.password = encodeURIComponent(password);
  return url.toString();
}

/** A positive whole number flag; 0 when absent. */
function count(value: string | undefined, flag: string, min: number): number {
  if (value === undefined) return 0;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) throw new ConfigError(`${flag} must be a whole number of at least ${min}, not "${value}"`);
  return n;
}

export function addRestoreCommands(program: Command, cli: CliContext): void {
  const { print, printJson } = cli;
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
    .option('--target <name>', 'restore into a target named in the coordinator\'s configuration (TIDEMARK_RESTORE_TARGETS)')
    .option('--target-amqp <url>', 'restore into another broker, URL without password (admin role; password in TIDEMARK_TARGET_AMQP_PASSWORD or _FILE)')
    .addOption(new Option('--bindings <mode>', 'recreate bindings: auto (queues that keep their name), all, none').choices(['auto', 'all', 'none']).default('auto'))
    .option('--no-origin-headers', 'leave out the x-tidemark-origin-* headers')
    .option('--concurrency <n>', 'queues restored at once over all workers (default 4 per worker)')
    .option('--rate <msgs/s>', 'limit the whole restore to this many messages per second')
    .option('--confirm-window <n>', 'unconfirmed messages per queue (default: the workers\' TIDEMARK_CONFIRM_WINDOW)')
    .option('--history', 'restore everything captured up to the cut (replay, forensics) instead of what each queue held at the cut')
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
        target: flags.target ?? '',
        targetAmqpUrl: rawTargetUrl(flags.targetAmqp, cli.io.env),
        dryRun: Boolean(flags.dryRun),
        history: Boolean(flags.history),
        bindings: flags.bindings,
        noOriginHeaders: flags.originHeaders === false,
        append: Boolean(flags.append),
        mode: flags.mode ?? '',
        concurrency: count(flags.concurrency, '--concurrency', 1),
        rateLimit: count(flags.rate, '--rate', 1),
        confirmWindow: count(flags.confirmWindow, '--confirm-window', 1),
      };
      const c = cli.client();
      try {
        await showRestore(cli, c, { request }, Boolean(flags.json));
      } finally {
        c.close();
      }
    });

  /** `--json` of a restore subcommand: commander gives it to `restore` itself, which declares it too. */
  const json = (flags: { json?: boolean }): boolean => Boolean(flags.json || restoreCommand.opts().json);

  restoreCommand
    .command('resume <id>')
    .description('follow a restore, continuing it first if it stopped (cancelled, or cut short by a crash)')
    .option('--target-amqp <url>', 'for a restore into a raw broker URL whose password the coordinator lost (failover): the URL again, password in TIDEMARK_TARGET_AMQP_PASSWORD')
    .option('--json', 'print one JSON event per line')
    .action(async (id: string, flags) => {
      const c = cli.client();
      try {
        await showRestore(cli, c, { restoreId: id, targetAmqpUrl: rawTargetUrl(flags.targetAmqp ?? restoreCommand.opts().targetAmqp, cli.io.env) }, json(flags));
      } finally {
        c.close();
      }
    });

  restoreCommand
    .command('cancel <id>')
    .description('stop a running restore (messages already confirmed stay; resume continues it)')
    .option('--json', 'print JSON')
    .action(async (id: string, flags) => {
      const c = cli.client();
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
      const c = cli.client();
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
}
