/**
 * The time a restore's `--at` names: an ISO-8601 time, a date, a time before now, or "now".
 *
 * `parseDuration` (./duration.ts) reads one number with one unit up to hours, for timeouts; a
 * point in the past needs days and weeks and compound spans (`-1h30m`), so spans are read here.
 */
import { ConfigError } from '../errors.js';

/**
 * How far past `nowMs` a time may lie and still be accepted: the clock of the machine that wrote
 * the time may run a little ahead of the coordinator's.
 */
export const AT_CLOCK_SKEW_MS = 5_000;

const ACCEPTED =
  'use an ISO-8601 time with a zone (2026-11-24T10:15:00Z, 2026-11-24T11:15:00+01:00), ' +
  'a date (2026-11-24, midnight UTC), a span before now (-90s, -15m, -2h, -1h30m, -1d, -2w) or "now"';

const UNIT_MS: Record<string, number> = {
  w: 7 * 86_400_000,
  d: 86_400_000,
  h: 3_600_000,
  m: 60_000,
  s: 1_000,
};

/** `-` then one or more `<integer><unit>`, units from weeks down to seconds, each at most once. */
const RELATIVE = /^-(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/;
const DATE_ONLY = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$/;

/**
 * Reads the time of a restore's `--at` and returns it in epoch milliseconds. Relative spans and
 * "now" count back from `nowMs`. Throws ConfigError for an empty or unreadable text, a time
 * without a zone (it would depend on the coordinator's local time zone), or a time more than
 * {@link AT_CLOCK_SKEW_MS} after `nowMs` (no checkpoint can exist there yet).
 */
export function parseAtTime(text: string, nowMs: number): number {
  const spec = text.trim();
  if (spec === '') throw new ConfigError(`--at is empty: ${ACCEPTED}; nothing was restored`);
  const atMs = spec.toLowerCase() === 'now' ? nowMs : spec.startsWith('-') ? relative(spec, nowMs) : absolute(spec);
  if (atMs > nowMs + AT_CLOCK_SKEW_MS) {
    throw new ConfigError(
      `--at "${text}" is ${new Date(atMs).toISOString()}, ${describeSpan(atMs - nowMs)} in the future: a restore takes a checkpoint ` +
        `that already exists, so name a time at or before now (${new Date(nowMs).toISOString()}); ${ACCEPTED}; nothing was restored`,
    );
  }
  return atMs;
}

function relative(spec: string, nowMs: number): number {
  const match = RELATIVE.exec(spec);
  // "-" alone matches with every part absent: it names no span.
  if (!match || spec === '-') throw notATime(spec);
  const units = ['w', 'd', 'h', 'm', 's'];
  let spanMs = 0;
  units.forEach((unit, i) => {
    const value = match[i + 1];
    if (value !== undefined) spanMs += Number(value) * UNIT_MS[unit];
  });
  if (!Number.isSafeInteger(spanMs)) throw notATime(spec);
  return nowMs - spanMs;
}

function absolute(spec: string): number {
  const date = DATE_ONLY.exec(spec);
  if (date) return utc(spec, Number(date[1]), Number(date[2]), Number(date[3]), 0, 0, 0, 0);
  const time = DATE_TIME.exec(spec);
  if (!time) throw notATime(spec);
  const [, year, month, day, hour, minute, second, fraction, zulu, sign, offsetHours, offsetMinutes] = time;
  if (zulu === undefined && sign === undefined) {
    throw new ConfigError(
      `--at "${spec}" has no time zone, so it would mean different times on different machines: add Z for UTC or an offset such as +01:00; ${ACCEPTED}; nothing was restored`,
    );
  }
  // Milliseconds are the finest the store's commit times keep: further digits are dropped.
  const ms = fraction === undefined ? 0 : Number(fraction.slice(0, 3).padEnd(3, '0'));
  const local = utc(spec, Number(year), Number(month), Number(day), Number(hour), Number(minute), Number(second ?? 0), ms);
  if (sign === undefined) return local;
  if (Number(offsetHours) > 23 || Number(offsetMinutes) > 59) throw notATime(spec);
  const offsetMs = (Number(offsetHours) * 60 + Number(offsetMinutes)) * 60_000;
  return sign === '+' ? local - offsetMs : local + offsetMs;
}

/** Epoch ms of a UTC calendar time, refusing fields out of range (Date.UTC would roll them over). */
function utc(spec: string, year: number, month: number, day: number, hour: number, minute: number, second: number, ms: number): number {
  const inRange = month >= 1 && month <= 12 && day >= 1 && hour <= 23 && minute <= 59 && second <= 59;
  const date = new Date(Date.UTC(2000, month - 1, day, hour, minute, second, ms));
  // Date.UTC maps years 0..99 to 1900..1999; setting the year afterwards keeps it as written.
  date.setUTCFullYear(year);
  if (!inRange || date.getUTCDate() !== day || date.getUTCMonth() !== month - 1) throw notATime(spec);
  return date.getTime();
}

function notATime(spec: string): ConfigError {
  return new ConfigError(`--at "${spec}" is not a time: ${ACCEPTED}; nothing was restored`);
}

function describeSpan(ms: number): string {
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  if (ms < 172_800_000) return `${Math.round(ms / 3_600_000)} h`;
  return `${Math.round(ms / 86_400_000)} days`;
}
