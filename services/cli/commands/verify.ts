/**
 * `verify` (check a checkpoint's manifests and objects) and `restore-drill` (restore into a
 * scratch vhost and reconcile). Ctrl-C stops watching; the exit code says whether the check passed.
 */
import type { Command } from 'commander';
import { collect, type CliContext } from '../context.js';
import { renderDrill } from '../drill-view.js';
import { EXIT_INCOMPLETE, ExitCode } from '../exit-codes.js';
import { renderVerify } from '../verify-view.js';
import { InterruptedError, NoResultError } from '../errors.js';

/** Runs `body` with a signal that Ctrl-C aborts with `reason`, for as long as `body` runs. */
async function interruptible<T>(reason: string, body: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onSigint = () => controller.abort(new InterruptedError(reason));
  process.once('SIGINT', onSigint);
  try {
    return await body(controller.signal);
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
}

export function addVerifyCommands(program: Command, cli: CliContext): void {
  const { print } = cli;
  program
    .command('verify <checkpoint>')
    .description('check a checkpoint: manifest chain, every object present with its checksum; --full decodes every record')
    .option('--full', 'also decode every record and check offsets and counts')
    .option('--json', 'print one JSON event per line')
    .action(async (checkpoint: string, flags) => {
      const c = cli.client();
      try {
        await interruptible('verify interrupted', async (signal) => {
          const done = await renderVerify(c.verify(checkpoint, Boolean(flags.full), signal), { json: Boolean(flags.json), print });
          if (!done) throw new NoResultError('the coordinator ended the verification without a result; run it again');
          if (done.problems > 0) throw new ExitCode(EXIT_INCOMPLETE);
        });
      } finally {
        c.close();
      }
    });

  program
    .command('restore-drill <checkpoint>')
    .description('restore into a scratch vhost, reconcile counts and checksums per queue, remove the vhost, report')
    .option('--queues <glob>', 'queues to drill, as for restore (repeatable)', collect, [])
    .option('--history', 'drill a history restore (everything captured up to the cut) instead of a contents restore')
    .option('--json', 'print one JSON event per line')
    .action(async (checkpoint: string, flags) => {
      const c = cli.client();
      try {
        await interruptible('restore drill interrupted', async (signal) => {
          const done = await renderDrill(c.restoreDrill(checkpoint, flags.queues, signal, Boolean(flags.history)), { json: Boolean(flags.json), print, out: cli.restoreOutput() });
          if (!done) throw new NoResultError('the coordinator ended the drill without a result; run it again');
          if (!done.ok) throw new ExitCode(EXIT_INCOMPLETE);
        });
      } finally {
        c.close();
      }
    });
}
