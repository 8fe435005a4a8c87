/**
 * What a checkpoint says a queue held at its cut (its contents), as opposed to its history.
 * A manifest written before heads existed has head_offset 0: its head is its start (history).
 */
import type { QueueCheckpoint } from '../../gen/tidemark/v1/store.js';

export interface QueueHead {
  /** Journal offset the contents begin at. */
  offset: number;
  /** Data messages in [start, offset). */
  messages: number;
}

/** Where the queue's contents begin in this entry (never before its start). */
export function headOf(entry: Pick<QueueCheckpoint, 'startOffset' | 'headOffset' | 'headMessages'>): QueueHead {
  if (entry.headOffset <= entry.startOffset) return { offset: entry.startOffset, messages: 0 };
  return { offset: entry.headOffset, messages: entry.headMessages };
}

/** Data messages in [head, cut): what a contents restore publishes. */
export function contentsMessages(entry: Pick<QueueCheckpoint, 'startOffset' | 'headOffset' | 'headMessages' | 'messages'>): number {
  return Math.max(0, entry.messages - headOf(entry).messages);
}

/** Where a history restore of this entry begins: its start, or where retention cut history off. */
export function historyOf(entry: Pick<QueueCheckpoint, 'startOffset' | 'historyOffset' | 'historyMessages'>): QueueHead {
  if (entry.historyOffset <= entry.startOffset) return { offset: entry.startOffset, messages: 0 };
  return { offset: entry.historyOffset, messages: entry.historyMessages };
}
