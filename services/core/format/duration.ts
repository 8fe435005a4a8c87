import { ConfigError } from '../errors.js';

/** Parses "250ms", "5s", "2m", "1h", "7d" or a bare number of milliseconds into milliseconds. */
export function parseDuration(text: string | number): number {
  if (typeof text === 'number') {
    if (Number.isFinite(text) && text >= 0) return Math.round(text);
    throw new ConfigError(`${text} is not a duration: use a non-negative number of milliseconds or e.g. 500ms, 30s, 5m, 1h`);
  }
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
  if (!match) throw new ConfigError(`"${text}" is not a duration: use e.g. 500ms, 30s, 5m, 1h, 7d or milliseconds`);
  const value = Number(match[1]);
  const unit = match[2] ?? 'ms';
  const factor = unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : unit === 'h' ? 3_600_000 : 86_400_000;
  return Math.round(value * factor);
}
