import { describe, expect, it } from 'vitest';
import { formatBytes } from '../../services/core/format/units.js';

describe('formatBytes', () => {
  it('writes whole bytes below a KiB and one decimal in the largest unit reached above', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1024)).toBe('1.0 KiB');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(5 * 1024 ** 3)).toBe('5.0 GiB');
    expect(formatBytes(3 * 1024 ** 5)).toBe('3072.0 TiB');
  });

  it('keeps to the range it is given: whole MiB below a GiB, GiB however large', () => {
    const range = { smallest: 'MiB', largest: 'GiB' } as const;
    expect(formatBytes(300 * 1024, range)).toBe('0 MiB');
    expect(formatBytes(512 * 1024 ** 2 + 600 * 1024, range)).toBe('513 MiB');
    expect(formatBytes(1024 ** 3, range)).toBe('1.0 GiB');
    expect(formatBytes(2 * 1024 ** 4, range)).toBe('2048.0 GiB');
  });
});
