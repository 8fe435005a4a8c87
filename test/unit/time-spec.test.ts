import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../services/core/errors.js';
import { parseAtTime } from '../../services/core/format/time-spec.js';

const NOW = Date.parse('2026-11-24T12:00:00.000Z');
const at = (text: string) => parseAtTime(text, NOW);
const iso = (text: string) => new Date(at(text)).toISOString();

function rejection(text: string, nowMs = NOW): ConfigError {
  try {
    parseAtTime(text, nowMs);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`"${text}" was accepted`);
}

describe('parseAtTime: ISO-8601', () => {
  it('reads a UTC time', () => {
    expect(iso('2026-11-24T10:15:00Z')).toBe('2026-11-24T10:15:00.000Z');
  });

  it('applies a positive or negative offset', () => {
    expect(iso('2026-11-24T11:15:00+01:00')).toBe('2026-11-24T10:15:00.000Z');
    expect(iso('2026-11-24T05:15:00-05:00')).toBe('2026-11-24T10:15:00.000Z');
    expect(iso('2026-11-24T15:45:00+0530')).toBe('2026-11-24T10:15:00.000Z');
  });

  it('reads fractional seconds to the millisecond and times without seconds', () => {
    expect(iso('2026-11-24T10:15:00.123456Z')).toBe('2026-11-24T10:15:00.123Z');
    expect(iso('2026-11-24T10:15:00.5Z')).toBe('2026-11-24T10:15:00.500Z');
    expect(iso('2026-11-24T10:15Z')).toBe('2026-11-24T10:15:00.000Z');
  });

  it('takes a date alone as midnight UTC', () => {
    expect(iso('2026-11-24')).toBe('2026-11-24T00:00:00.000Z');
  });

  it('accepts a leap day only in a leap year', () => {
    expect(iso('2024-02-29')).toBe('2024-02-29T00:00:00.000Z');
    expect(rejection('2026-02-29').message).toMatch(/is not a time/);
  });

  it('refuses calendar fields out of range instead of rolling them over', () => {
    for (const text of ['2026-13-01', '2026-11-31', '2026-11-24T24:00:00Z', '2026-11-24T10:60:00Z', '2026-11-24T10:15:61Z', '2026-11-24T10:15:00+24:00']) {
      expect(rejection(text).message, text).toMatch(/is not a time/);
    }
  });

  it('refuses a time without a zone, saying to add one', () => {
    expect(rejection('2026-11-24T10:15:00').message).toMatch(/no time zone.*add Z for UTC or an offset/);
  });
});

describe('parseAtTime: relative to now', () => {
  it.each([
    ['-90s', 90_000],
    ['-15m', 15 * 60_000],
    ['-2h', 2 * 3_600_000],
    ['-1d', 86_400_000],
    ['-2w', 14 * 86_400_000],
    ['-1h30m', 90 * 60_000],
    ['-1d12h', 36 * 3_600_000],
  ])('%s is that long before now', (text, spanMs) => {
    expect(at(text)).toBe(NOW - spanMs);
  });

  it('"now" is now, in any case and with surrounding spaces', () => {
    expect(at('now')).toBe(NOW);
    expect(at(' NOW ')).toBe(NOW);
  });

  it('refuses spans without a minus sign, out of order, with unknown units or without a unit', () => {
    for (const text of ['15m', '+15m', '-', '-30m1h', '-1h1h', '-15', '-3y', '-1.5h', '-15 m', '-15M']) {
      expect(rejection(text).message, text).toMatch(/is not a time/);
    }
  });
});

describe('parseAtTime: refusals', () => {
  it('refuses an empty or blank text, showing the accepted forms', () => {
    for (const text of ['', '   ']) {
      const err = rejection(text);
      expect(err.message).toMatch(/--at is empty/);
      expect(err.message).toMatch(/2026-11-24T10:15:00Z.*-15m.*"now"/);
    }
  });

  it('shows the accepted forms when a text is not a time', () => {
    const err = rejection('yesterday');
    expect(err.message).toContain('--at "yesterday" is not a time');
    for (const form of ['2026-11-24T10:15:00Z', '+01:00', '2026-11-24', '-90s', '-1h30m', '-2w', '"now"']) {
      expect(err.message).toContain(form);
    }
  });

  it('accepts a time within 5 s of clock skew ahead of now', () => {
    expect(at('2026-11-24T12:00:05Z')).toBe(NOW + 5_000);
  });

  it('refuses a time further in the future, saying how far and what now is', () => {
    const err = rejection('2026-11-24T12:00:06Z');
    expect(err.message).toMatch(/6 s in the future/);
    expect(err.message).toContain('at or before now (2026-11-24T12:00:00.000Z)');
    expect(rejection('2026-11-25').message).toMatch(/12 h in the future/);
  });

  it('measures the future from the given now, not the machine clock', () => {
    const past = Date.parse('2020-01-01T00:00:00Z');
    expect(rejection('2026-11-24T10:15:00Z', past).message).toMatch(/in the future/);
    expect(parseAtTime('-1h', past)).toBe(past - 3_600_000);
  });
});
