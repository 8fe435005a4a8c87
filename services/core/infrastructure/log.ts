/**
 * The services' logger: pino, one JSON object per line on stderr (stdout stays for command
 * output), or a readable line per event for a terminal. Every event is a constant message plus
 * its facts as fields (docs/OPERATIONS.md#logs lists them), so a log pipeline can filter on
 * `epoch` or `queue` without parsing sentences.
 *
 * Lines are written synchronously: a process that exits (a second signal, the stop limit, a
 * crash) loses none of what it logged before.
 */
import { createRequire } from 'node:module';
import type { DestinationStream, Logger as PinoLogger, LoggerOptions as PinoOptions } from 'pino';
import type { PrettyOptions } from 'pino-pretty';
import { redactUrlsIn } from '../amqp/vhost-url.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** How lines look: `json` for log pipelines, `pretty` for people, `auto` pretty only on a terminal. */
export type LogFormat = 'auto' | 'json' | 'pretty';

/** The facts of one event, by the names docs/OPERATIONS.md#logs lists (vhost, queue, epoch, err, ...). */
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger for a part of this one: its component is `<parent>/<component>`, and `fields` go on every line. */
  child(component: string, fields?: LogFields): Logger;
}

export interface LoggerOptions {
  /** Least severe level written. @default info */
  level?: LogLevel;
  /** Line format. @default auto: pretty when stderr is a terminal, else json */
  format?: LogFormat;
  /** Fields on every line of this logger and its children, e.g. `{ worker: 'worker-1' }`. @default none */
  fields?: LogFields;
  /** Where lines go, one `write` per line. @default stderr, written synchronously */
  destination?: { write(line: string): void };
  /** Colours in pretty mode. @default when the destination is a terminal that supports them */
  colorize?: boolean;
}

/**
 * Field names whose values are secrets, wherever a caller puts them (top level or one object
 * down): a safety net under the rule that no secret is ever passed to a logger at all.
 */
const SECRET_FIELDS: readonly string[] = [
  'password', 'passwd', 'secret', 'token', 'bearer', 'authorization', 'Authorization', 'cookie',
  'accessKey', 'secretKey', 's3AccessKey', 's3SecretKey', 'masterKey', 'privateKey', 'apiKey',
  'passphrase', 'credentials',
];

const CENSOR = '***';

// pino and pino-pretty load on first use: CLI commands that never log do not pay for them.
const require = createRequire(import.meta.url);

/** The format `auto` resolves to for a stream: pretty on a terminal, else JSON. */
export function resolveLogFormat(format: LogFormat, stream: { isTTY?: boolean } = process.stderr): 'json' | 'pretty' {
  if (format !== 'auto') return format;
  return stream.isTTY ? 'pretty' : 'json';
}

/**
 * The logger of a process (or of a test): `component` names it on every line; children add
 * `/<part>`. A bare level is short for `{ level }`.
 */
export function createLogger(component: string, levelOrOptions: LogLevel | LoggerOptions = {}): Logger {
  const options = typeof levelOrOptions === 'string' ? { level: levelOrOptions } : levelOrOptions;
  const pino = require('pino') as typeof import('pino');
  const pinoOptions: PinoOptions = {
    level: options.level ?? 'info',
    base: { pid: process.pid, ...(options.fields ? (scrub(options.fields, 0) as LogFields) : {}) },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: SECRET_FIELDS.flatMap((name) => [name, `*.${name}`]), censor: CENSOR },
  };
  return wrap(pino(pinoOptions, destination(options)), component);
}

function destination(options: LoggerOptions): DestinationStream {
  const pino = require('pino') as typeof import('pino');
  const format = resolveLogFormat(options.format ?? 'auto');
  const out: { write(line: string): void } = options.destination ?? pino.destination({ fd: 2, sync: true });
  if (format === 'json') return out;
  // pino-pretty's formatter, called in this thread on each line: a transport (a worker thread)
  // could lose the last lines when the process exits.
  const { prettyFactory } = require('pino-pretty') as typeof import('pino-pretty');
  const prettyOptions: PrettyOptions = {
    colorize: options.colorize ?? (options.destination ? false : process.stderr.isTTY === true && process.stderr.hasColors()),
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,component',
    messageFormat: '[{component}] {msg}',
    singleLine: true,
    // `err` holds an error's message, a field like the others: not pino-pretty's multi-line error block.
    errorLikeObjectKeys: [],
  };
  const prettify = prettyFactory(prettyOptions);
  return { write: (line: string) => out.write(prettify(line)) };
}

function wrap(root: PinoLogger, component: string, bound?: LogFields): Logger {
  // One pino child per component: pino would repeat a key bound twice, so the path is built here.
  const log = root.child({ component, ...bound });
  const write = (level: LogLevel) => (message: string, fields?: LogFields) => {
    if (!log.isLevelEnabled(level)) return;
    if (fields) log[level](scrub(fields, 0) as object, redactUrlsIn(message));
    else log[level](redactUrlsIn(message));
  };
  return {
    debug: write('debug'),
    info: write('info'),
    warn: write('warn'),
    error: write('error'),
    child: (sub, fields) => wrap(root, `${component}/${sub}`, fields ? { ...bound, ...(scrub(fields, 0) as LogFields) } : bound),
  };
}

/**
 * The fields with credentials taken out of every URL in their strings (amqp://user:***@host),
 * and errors turned into their messages. Secret-named fields are pino's `redact` to censor.
 */
function scrub(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return redactUrlsIn(value);
  if (value instanceof Error) return redactUrlsIn(value.message);
  if (typeof value !== 'object' || value === null || depth > 4) return value;
  if (Array.isArray(value)) return value.map((item) => scrub(item, depth + 1));
  if (value instanceof Date || Buffer.isBuffer(value)) return value;
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, scrub(item, depth + 1)]));
}

/** A logger that prints nothing, for tests of pure logic. */
export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silentLogger,
};

/**
 * A warning that repeats itself at most once per `intervalMs`, with `suppressed` saying how many
 * it held back since the last: for sources that fail many times a second while a dependency is
 * down (e.g. a Redis client reconnecting).
 */
export function throttledWarn(log: Logger, intervalMs = 10_000): (message: string, fields?: LogFields) => void {
  let lastAt = 0;
  let held = 0;
  return (message, fields) => {
    const now = Date.now();
    if (now - lastAt < intervalMs) {
      held += 1;
      return;
    }
    log.warn(message, held > 0 ? { ...fields, suppressed: held } : fields);
    lastAt = now;
    held = 0;
  };
}
