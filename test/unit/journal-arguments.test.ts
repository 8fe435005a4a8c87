import { describe, expect, it } from 'vitest';
import { journalArguments } from '../../services/coordinator/journal-retention.js';
import { loadConfig } from '../../services/core/infrastructure/config.js';
import { ConfigError } from '../../services/core/errors.js';

describe('journal stream arguments', () => {
  it('bound a journal by age only, unless a size or a retention bound is known', () => {
    expect(journalArguments('7D', 0)).toEqual({ 'x-queue-type': 'stream', 'x-max-age': '7D' });
  });

  it('with a size, make segments an eighth of it (at least 1 MB, at most the broker default) so retention can act', () => {
    expect(journalArguments('7D', 80_000_000)).toEqual({ 'x-queue-type': 'stream', 'x-max-age': '7D', 'x-max-length-bytes': 80_000_000, 'x-stream-max-segment-size-bytes': 10_000_000 });
    expect(journalArguments('1D', 3_000_000)['x-stream-max-segment-size-bytes']).toBe(1_000_000);
    expect(journalArguments('1D', 100_000_000_000)['x-stream-max-segment-size-bytes']).toBe(500_000_000);
  });

  it('sizes segments from the retention bound (the policy applies it), or the cap if that is smaller', () => {
    expect(journalArguments('7D', 0, 64_000_000)).toEqual({ 'x-queue-type': 'stream', 'x-max-age': '7D', 'x-stream-max-segment-size-bytes': 8_000_000 });
    expect(journalArguments('7D', 16_000_000, 64_000_000)['x-stream-max-segment-size-bytes']).toBe(2_000_000);
    expect(journalArguments('7D', 16_000_000, 64_000_000)['x-max-length-bytes']).toBe(16_000_000);
  });

  it('reads the journal retention settings with their defaults, and refuses ones that make no sense', () => {
    const defaults = loadConfig({ env: {} });
    expect(defaults.journalDiskShare).toBe(0.5);
    expect(defaults.journalMinBytes).toBe(64 * 1024 * 1024);
    const set = loadConfig({ env: { TIDEMARK_JOURNAL_DISK_SHARE: '0.25', TIDEMARK_JOURNAL_MIN_BYTES: '2000000' } });
    expect([set.journalDiskShare, set.journalMinBytes]).toEqual([0.25, 2_000_000]);
    expect(() => loadConfig({ env: { TIDEMARK_JOURNAL_DISK_SHARE: '0' } })).toThrow(/journalDiskShare|TIDEMARK_JOURNAL_DISK_SHARE/);
    expect(() => loadConfig({ env: { TIDEMARK_JOURNAL_DISK_SHARE: '1.5' } })).toThrow(ConfigError);
    expect(() => loadConfig({ env: { TIDEMARK_JOURNAL_MIN_BYTES: '0' } })).toThrow(ConfigError);
    expect(() => loadConfig({ env: { TIDEMARK_JOURNAL_MIN_BYTES: 'lots' } })).toThrow(ConfigError);
  });

  it('reads TIDEMARK_JOURNAL_MAX_BYTES, default 0, and refuses a negative or fractional one', () => {
    expect(loadConfig({ env: {} }).journalMaxBytes).toBe(0);
    expect(loadConfig({ env: { TIDEMARK_JOURNAL_MAX_BYTES: '3000000' } }).journalMaxBytes).toBe(3_000_000);
    expect(() => loadConfig({ env: { TIDEMARK_JOURNAL_MAX_BYTES: '-1' } })).toThrow(ConfigError);
    expect(() => loadConfig({ env: { TIDEMARK_JOURNAL_MAX_BYTES: '1.5' } })).toThrow(ConfigError);
  });
});
