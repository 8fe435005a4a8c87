/**
 * What every command of one CLI run shares: where it writes, the environment it reads, and the
 * root program's global options (--config, --coordinator, --log-level), turned into a validated
 * configuration and a coordinator client on demand.
 */
import type { Command } from 'commander';
import { type Config, loadConfig, loadGrpcTls } from '../core/index.js';
import { TidemarkClient, tokenFromEnvironment } from '../client/index.js';
import type { RestoreViewOutput } from './restore-view.js';

/** An output stream of a run: process.stdout/stderr, or a test's capture. */
export interface CliStream {
  write(s: string): unknown;
  /** Whether it reaches a terminal (restore progress bars, help width). @default false */
  isTTY?: boolean;
  /** Terminal width in columns. @default 80 */
  columns?: number;
}

/** Where a run of the CLI reads its environment and writes. */
export interface CliIo {
  /** Data: tables, and --json output. @default process.stdout */
  stdout: CliStream;
  /** The CLI's own errors and notices. @default process.stderr */
  stderr: CliStream;
  /** Where TIDEMARK_* variables are read. @default process.env */
  env: NodeJS.ProcessEnv;
}

export class CliContext {
  constructor(
    private readonly program: Command,
    readonly io: CliIo,
  ) {}

  /** The configuration from env, --config file and flags (the global ones plus `flags`). */
  config(flags: Record<string, unknown> = {}): Config {
    const globals = this.program.opts<{ config?: string; coordinator?: string; logLevel?: string; tlsCa?: string; tlsCert?: string; tlsKey?: string }>();
    return loadConfig({
      env: this.io.env,
      file: globals.config,
      flags: { coordinator: globals.coordinator, logLevel: globals.logLevel, tlsCa: globals.tlsCa, tlsCert: globals.tlsCert, tlsKey: globals.tlsKey, ...flags },
    });
  }

  /**
   * A client of the configured coordinator: over TLS unless TIDEMARK_TLS=off
   * (docs/SECURITY.md#transport-security), sending the token from TIDEMARK_TOKEN / TIDEMARK_TOKEN_FILE.
   */
  client(): TidemarkClient {
    const config = this.config();
    return new TidemarkClient(config.coordinator, { tls: loadGrpcTls(config, 'client'), token: tokenFromEnvironment(this.io.env) });
  }

  /** One line of data on stdout: a string as is, anything else as compact JSON. */
  readonly print = (value: unknown): void => void this.io.stdout.write(`${typeof value === 'string' ? value : JSON.stringify(value)}\n`);

  /** A --json document on stdout. */
  readonly printJson = (value: unknown): void => void this.io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);

  /** A message of the CLI's own on stderr, after "tidemark: ". */
  warn(message: string): void {
    this.io.stderr.write(`tidemark: ${message}\n`);
  }

  /** stdout as the restore display sees it (redrawn bars on a terminal, plain lines if not). */
  restoreOutput(): RestoreViewOutput {
    const stdout = this.io.stdout;
    return {
      write: (s) => void stdout.write(s),
      get isTTY() {
        return stdout.isTTY === true;
      },
      get columns() {
        return stdout.columns;
      },
    };
  }
}

/** A repeatable option's values, in order. */
export const collect = (value: string, previous: string[] = []): string[] => [...previous, value];
