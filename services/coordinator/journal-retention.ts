/**
 * Journal retention (G6): journals never fill the broker's disk. Each journal is a second copy of
 * its queue's traffic, kept by the broker until its retention removes it. Capture reads a journal
 * as it is written, so it only needs the few seconds a worker lags behind (longer across a worker
 * outage); the rest is already in segments that committed checkpoints hold. So the leader bounds
 * what every journal keeps with a policy of its own (`<namespace>.journals`, max-length-bytes)
 * sized from the broker's free disk, and backs off as the disk fills:
 *
 * - The bound: journals together may take `diskShare` of the disk above each node's
 *   `disk_free_limit` plus `guardDiskMargin`. The broker does not report a stream's size, so the
 *   rule assumes every journal is full at the current bound; then the bound at which the journals
 *   and the disk they leave free balance is a fixed point: bound = share × (headroom + journals ×
 *   bound) / journals. Each pass moves towards it (shrinking at once, growing at most twofold),
 *   never below `minBytes` and never above `maxBytes` (journalMaxBytes).
 * - Pressure: when a node's free disk comes within half of `guardDiskMargin` of its
 *   `disk_free_limit` (or its disk alarm is on) and the bound was already at `minBytes`, the
 *   leader stops protecting the largest journal, one per pass, until the pressure is gone: the
 *   broker's disk alarm would block every producer, which is worse than a queue without
 *   checkpoints. Such a queue is reported as unprotected with the reason.
 *
 * RabbitMQ removes whole stream segments only, so new journals get segments of an eighth of the
 * bound; journals declared with RabbitMQ's default 500 MB segments shrink in steps of 500 MB.
 *
 * {@link journalBound} is the pure decision; {@link JournalRetention} keeps the current bound.
 */
import type { Logger } from '../core/index.js';
import type { NodeResources } from '../core/amqp/index.js';
import { mib } from './resource-guard.js';

/** The retention settings (config keys journalDiskShare, journalMinBytes, journalMaxBytes, guardDiskMargin). */
export interface RetentionLimits {
  /** Share of the disk headroom all journals together may take. @default 0.5 */
  diskShare: number;
  /** The bound never goes below this; past it, pressure sheds journals instead. @default 64 MiB */
  minBytes: number;
  /** The bound never goes above this; 0 for no cap. @default 0 */
  maxBytes: number;
  /** Free disk kept above each node's disk_free_limit (guardDiskMargin). @default 1 GiB */
  diskMargin: number;
}

export interface RetentionDecision {
  /** Bytes each journal keeps at most; undefined when the broker reports no disk figures. */
  boundBytes: number | undefined;
  /** Journals to stop protecting now, largest first (0 or 1). */
  shed: number;
  /** Why the disk is under pressure; empty when it is not. */
  pressure: string;
}

/** A bound change smaller than this share is not applied (every change rewrites a policy). */
const HYSTERESIS = 0.2;
/** Segments of a new journal are this fraction of its bound, so retention keeps it near the bound. */
const SEGMENTS_PER_BOUND = 8;
const MIN_SEGMENT_BYTES = 1_000_000;
/** RabbitMQ's default stream segment size. */
export const DEFAULT_STREAM_SEGMENT_BYTES = 500_000_000;

/**
 * The bound every journal should keep, and whether to shed one. `journals` is how many exist now;
 * `current` the bound in force (undefined before there is one) and `journalsAtCurrent` how many
 * journals there were when it was set (those are assumed full, later ones empty).
 */
export function journalBound(
  nodes: readonly NodeResources[],
  limits: RetentionLimits,
  state: { journals: number; current?: number; journalsAtCurrent?: number },
): RetentionDecision {
  const measured = nodes.filter((n) => n.running && n.diskFree !== undefined && n.diskFreeLimit !== undefined);
  if (measured.length === 0) return { boundBytes: state.current, shed: 0, pressure: '' };
  const tightest = measured.reduce((a, b) => (b.diskFree! - b.diskFreeLimit! < a.diskFree! - a.diskFreeLimit! ? b : a));
  const headroom = tightest.diskFree! - tightest.diskFreeLimit! - limits.diskMargin;
  const journals = Math.max(1, state.journals);
  const held = state.current === undefined ? 0 : state.current * Math.max(0, Math.min(state.journals, state.journalsAtCurrent ?? state.journals));
  const cap = limits.maxBytes > 0 ? limits.maxBytes : Number.POSITIVE_INFINITY;
  let bound = Math.min(cap, Math.max(limits.minBytes, Math.floor((limits.diskShare * Math.max(0, headroom + held)) / journals)));
  const current = state.current;
  if (current !== undefined) {
    if (bound > current) bound = Math.min(bound, 2 * current);
    const small = Math.abs(bound - current) < HYSTERESIS * current;
    // Small moves wait, unless the disk is already inside the margin or a cap changed.
    if (small && headroom >= 0 && current <= cap && current >= limits.minBytes) bound = current;
  }
  const alarm = measured.find((n) => n.diskFreeAlarm);
  const pressure = alarm
    ? `disk alarm on broker node ${alarm.name} (RabbitMQ is blocking publishers)`
    : headroom < -limits.diskMargin / 2
      ? `broker node ${tightest.name} has ${mib(tightest.diskFree!)} of disk free, within ${mib(limits.diskMargin / 2)} of its disk_free_limit (${mib(tightest.diskFreeLimit!)})`
      : '';
  // Shrinking comes first: shed only once a pass began with the bound already at its floor.
  const shed = pressure && current !== undefined && current <= limits.minBytes && state.journals > 0 ? 1 : 0;
  return { boundBytes: bound, shed, pressure };
}

/** x-stream-max-segment-size-bytes for a new journal kept at `bound` bytes. */
export function segmentBytesFor(bound: number | undefined): number | undefined {
  if (bound === undefined) return undefined;
  return Math.min(DEFAULT_STREAM_SEGMENT_BYTES, Math.max(MIN_SEGMENT_BYTES, Math.floor(bound / SEGMENTS_PER_BOUND)));
}

/** Keeps the bound in force across passes and logs its changes and the pressure. */
export class JournalRetention {
  private current: number | undefined;
  private journalsAtCurrent = 0;
  private lastPressure = '';

  constructor(
    private readonly limits: RetentionLimits,
    private readonly log: Logger,
  ) {}

  /** The bound in force (what the journal policies say), undefined before the first decision. */
  get boundBytes(): number | undefined {
    return this.current;
  }

  /** Why the disk is under pressure as of the last pass; empty when it is not. */
  get pressure(): string {
    return this.lastPressure;
  }

  /** A bound found on the broker (an earlier leader's policy) is the one in force. */
  adopt(bound: number, journals: number): void {
    if (this.current !== undefined) return;
    this.current = bound;
    this.journalsAtCurrent = journals;
  }

  /** Decides this pass's bound from the broker's figures; `journals` is how many exist now. */
  decide(nodes: readonly NodeResources[], journals: number): RetentionDecision {
    const decision = journalBound(nodes, this.limits, { journals, current: this.current, journalsAtCurrent: this.journalsAtCurrent });
    if (decision.boundBytes !== undefined && decision.boundBytes !== this.current) {
      const before = this.current;
      this.current = decision.boundBytes;
      this.journalsAtCurrent = journals;
      const fields = { maxBytes: decision.boundBytes, previousMaxBytes: before, journals };
      if (before !== undefined && decision.boundBytes < before) this.log.warn('journal retention bound lowered: the broker\'s free disk shrank', fields);
      else this.log.info('journal retention bound set', fields);
    }
    if (decision.pressure !== this.lastPressure) {
      if (decision.pressure) this.log.warn('journal retention: disk pressure', { reason: decision.pressure });
      else this.log.info('journal retention: disk pressure gone');
      this.lastPressure = decision.pressure;
    }
    return decision;
  }
}

/**
 * The arguments of a new journal stream: `maxBytes` (journalMaxBytes, 0 for none) is a hard cap
 * of its own; `boundBytes` the retention bound in force (journal-retention.ts), which the vhost's
 * journal policy applies. Segments are sized from the smaller, so that retention, which removes
 * whole segments, can keep the journal near it.
 */
export function journalArguments(maxAge: string, maxBytes: number, boundBytes?: number): Record<string, unknown> {
  const args: Record<string, unknown> = { 'x-queue-type': 'stream', 'x-max-age': maxAge };
  if (maxBytes > 0) args['x-max-length-bytes'] = maxBytes;
  const kept = [maxBytes > 0 ? maxBytes : undefined, boundBytes].filter((b): b is number => b !== undefined && b > 0);
  const segment = segmentBytesFor(kept.length > 0 ? Math.min(...kept) : undefined);
  if (segment !== undefined) args['x-stream-max-segment-size-bytes'] = segment;
  return args;
}
