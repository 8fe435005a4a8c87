/**
 * The tidemark command line as a function: `run(argv, io)` builds a fresh commander program,
 * runs one command and resolves to its exit code (exit-codes.ts), so that tests and other programs
 * can run it in process. main.ts runs it as the `tidemark` executable.
 *
 * Service commands (coordinator, worker, cluster up) start processes; every other command talks
 * to the coordinator over gRPC. Data goes to stdout (--json for the stable machine-readable form),
 * logs and errors to stderr.
 */
import { Command } from 'commander';
import { ConfigError, errorMessage } from '../core/index.js';
import { addCheckpointCommands } from './commands/checkpoints.js';
import { addHealthCommand } from './commands/health.js';
import { addKeyCommands } from './commands/keys.js';
import { addRestoreCommands } from './commands/restore.js';
import { addServiceCommands } from './commands/services.js';
import { addStatusCommand } from './commands/status.js';
import { addTlsCommands } from './commands/tls.js';
import { addTokenCommands } from './commands/token.js';
import { addVerifyCommands } from './commands/verify.js';
import { CliContext, type CliIo } from './context.js';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, ExitCode } from './exit-codes.js';

export type { CliIo, CliStream } from './context.js';

/** The whole program, its global options and every command, writing to `io`. */
export function createProgram(io: CliIo): Command {
  const program = new Command('tidemark')
    .description('Online, consistent, point-in-time backups of RabbitMQ queues')
    .option('--config <file>', 'JSON config file (overrides TIDEMARK_* variables; flags override it)')
    .option('--coordinator <host:port>', 'coordinator address, or a comma-separated list of them: the leader is found through any (TIDEMARK_COORDINATOR)')
    .option('--log-level <level>', 'debug, info, warn or error (TIDEMARK_LOG_LEVEL)')
    .option('--tls-ca <file>', 'CA certificate that signed the peer certificates (TIDEMARK_TLS_CA)')
    .option('--tls-cert <file>', 'this process\'s certificate: a service\'s own, or the CLI\'s client certificate (TIDEMARK_TLS_CERT)')
    .option('--tls-key <file>', 'the private key of --tls-cert (TIDEMARK_TLS_KEY)')
    // Before any command is added: commands copy their parent's settings when created.
    .configureOutput({
      writeOut: (s) => void io.stdout.write(s),
      writeErr: (s) => void io.stderr.write(s),
      // Commander's own default width is 80 too.
      getOutHelpWidth: () => (io.stdout.isTTY ? io.stdout.columns : undefined) ?? 80,
      getErrHelpWidth: () => (io.stderr.isTTY ? io.stderr.columns : undefined) ?? 80,
    })
    .showHelpAfterError()
    .exitOverride();
  const cli = new CliContext(program, io);
  // The order here is the order of `tidemark --help`.
  addServiceCommands(program, cli);
  addCheckpointCommands(program, cli);
  addStatusCommand(program, cli);
  addHealthCommand(program, cli);
  addRestoreCommands(program, cli);
  addVerifyCommands(program, cli);
  addTlsCommands(program, cli);
  addTokenCommands(program, cli);
  addKeyCommands(program, cli);
  return program;
}

/**
 * Runs one tidemark command: `argv` are its arguments without node and the script
 * (`process.argv.slice(2)`). Resolves to the exit code; never exits the process itself, except
 * a service command on a second SIGINT/SIGTERM or past its stop limit (commands/services.ts).
 * Each call builds its own program, so calls do not share options or state.
 */
export async function run(argv: string[], io: Partial<CliIo> = {}): Promise<number> {
  const full: CliIo = { stdout: io.stdout ?? process.stdout, stderr: io.stderr ?? process.stderr, env: io.env ?? process.env };
  const program = createProgram(full);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT_OK;
  } catch (err) {
    if (err instanceof ExitCode) return err.code;
    // Commander printed its own message (or the help): only the code is left to give.
    if ((err as { code?: string }).code?.startsWith('commander.')) {
      const code = (err as { exitCode?: number }).exitCode ?? EXIT_USAGE;
      return code === 0 ? EXIT_OK : EXIT_USAGE;
    }
    full.stderr.write(`tidemark: ${errorMessage(err)}\n`);
    return err instanceof ConfigError ? EXIT_USAGE : EXIT_FAILED;
  }
}
