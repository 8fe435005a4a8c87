/** Byte counts as people read them, in binary units. */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'] as const;

/** A unit {@link formatBytes} may write. */
export type ByteUnit = (typeof UNITS)[number];

/** The units {@link formatBytes} may choose from. */
export interface ByteUnitRange {
  /** The unit of counts too small for any larger one, written as a whole number. @default "B" */
  smallest?: ByteUnit;
  /** The largest unit used, however large the count. @default "TiB" */
  largest?: ByteUnit;
}

/**
 * `n` bytes in the largest unit of the range that it reaches, with one decimal ("1.5 GiB"), or in
 * the smallest unit rounded to a whole number when it reaches no larger one ("512 B", "300 MiB").
 */
export function formatBytes(n: number, range: ByteUnitRange = {}): string {
  const smallest = UNITS.indexOf(range.smallest ?? 'B');
  const largest = UNITS.indexOf(range.largest ?? 'TiB');
  let unit = smallest;
  while (unit < largest && n >= 1024 ** (unit + 1)) unit += 1;
  const value = n / 1024 ** unit;
  return unit === smallest ? `${Math.round(value)} ${UNITS[unit]}` : `${value.toFixed(1)} ${UNITS[unit]}`;
}
