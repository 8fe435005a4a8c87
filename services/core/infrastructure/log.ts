/** A minimal structured logger: one line per event on stderr, so stdout stays for command output. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  child(component: string): Logger;
}

export function createLogger(component: string, level: LogLevel = 'info'): Logger {
  const write = (at: LogLevel, message: string, fields?: Record<string, unknown>): void => {
    if (rank[at] < rank[level]) return;
    const extra = fields && Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : '';
    process.stderr.write(`${new Date().toISOString()} ${at.toUpperCase().padEnd(5)} [${component}] ${message}${extra}\n`);
  };
  return {
    debug: (message, fields) => write('debug', message, fields),
    info: (message, fields) => write('info', message, fields),
    warn: (message, fields) => write('warn', message, fields),
    error: (message, fields) => write('error', message, fields),
    child: (sub) => createLogger(`${component}/${sub}`, level),
  };
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
 * A warning that repeats itself at most once per `intervalMs`, saying how many it held back: for
 * sources that fail many times a second while a dependency is down (e.g. a Redis client
 * reconnecting).
 */
export function throttledWarn(log: Logger, intervalMs = 10_000): (message: string) => void {
  let lastAt = 0;
  let held = 0;
  return (message) => {
    const now = Date.now();
    if (now - lastAt < intervalMs) {
      held += 1;
      return;
    }
    log.warn(held > 0 ? `${message} (and ${held} more like it)` : message);
    lastAt = now;
    held = 0;
  };
}
