/**
 * Where a queue's contents begin at a cut (its head), pure: no I/O, no clock.
 * docs/HEAD-AT-THE-CUT.md has the measurements behind the rules; docs/PROTOCOL.md#the-head-at-the-cut
 * the summary.
 *
 * Before each fence the leader publishes a marker M0 into every journal of the vhost, waits for
 * its confirm, and asks the broker for each source queue's ready count R (passive declare) and a
 * bound U on its unacknowledged messages (the consumers' prefetch summed). Every message held at
 * the fence is ready or unacknowledged then, or arrived later, so with FIFO delivery and in-order
 * acknowledgements the held messages are at most the newest R + U (+ a margin) data records before
 * M0. That is the count rule:
 *
 *   head = D(M0) − (R + U + margin), D(M0) = data records in [start, M0)
 *
 * Out-of-order acknowledgements break it (a consumer can hold an old message while others ack
 * newer ones); if consumers never hold a message longer than `maxHold`, the frontier rule is
 * sound instead: at a marker k, every record before D(M_k) − R_k had been delivered, so a message
 * held at the fence is at or after the frontier of the latest marker at least `maxHold` old. With
 * a hold bound the head is the smaller of the two.
 *
 * Invariants:
 * - A head never moves back, and moves forward only on a census with no fallback: any message
 *   held now was held at the previous cut or arrived after it, so the previous head stays
 *   conservative whatever the broker did since (requeues, priorities, rejected publishes).
 * - A head is a data index (messages before it) first and an offset second; the offset comes from
 *   the runs of contiguous data records this capture read (DataIndex). An index before what this
 *   capture read keeps the previous head.
 */
import type { QueueCensus } from '../gen/tidemark/v1/worker.js';

/** Runs a DataIndex keeps at most (two a round: its marker and its fence). */
const MAX_RUNS = 20_000;

/** Data records at consecutive offsets: data index `index` sits at `offset`, and so on until the next run. */
interface Run {
  offset: number;
  index: number;
}

/**
 * Maps a data index (messages since the queue's start) to its journal offset, for the records a
 * capture read. A run begins after every record that is not data (fence, marker) and after every
 * hole in the offsets, so inside a run data index and offset advance together.
 */
export class DataIndex {
  private runs: Run[] = [];

  /** Data index `index` is (or would be) the record at `offset`, and the following ones follow on. */
  run(offset: number, index: number): void {
    const last = this.runs[this.runs.length - 1];
    if (last && last.offset === offset) {
      last.index = index;
      return;
    }
    if (last && last.offset > offset) this.runs = this.runs.filter((r) => r.offset < offset);
    this.runs.push({ offset, index });
    // A head that never moves (a priority queue) would keep every run: the oldest go, and a head
    // that would land among them keeps the earlier head instead (offsetOf answers undefined).
    if (this.runs.length > MAX_RUNS) this.runs = this.runs.slice(this.runs.length - MAX_RUNS / 2);
  }

  /** Forgets everything: the capture starts over at `offset` with data index `index`. */
  restart(offset: number, index: number): void {
    this.runs = [{ offset, index }];
  }

  /** The offset of data record `index`, or undefined when it lies before what this capture read. */
  offsetOf(index: number): number | undefined {
    const runs = this.runs;
    if (runs.length === 0 || index < runs[0].index) return undefined;
    // The last run starting at or before `index`: runs are in offset order and indexes never decrease.
    let lo = 0;
    let hi = runs.length - 1;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (runs[mid].index <= index) lo = mid;
      else hi = mid - 1;
    }
    return runs[lo].offset + (index - runs[lo].index);
  }

  /** Drops the runs wholly before data index `index`, which no head can move back to. */
  forgetBefore(index: number): void {
    let keep = 0;
    while (keep + 1 < this.runs.length && this.runs[keep + 1].index <= index) keep += 1;
    if (keep > 0) this.runs = this.runs.slice(keep);
  }

  get size(): number {
    return this.runs.length;
  }
}

/** A queue's head at a cut, as its checkpoint entry records it. */
export interface Head {
  offset: number;
  /** Data messages in [start, offset). */
  messages: number;
  /** Held messages that predate the queue's protection (never captured). */
  predating: number;
  /** A census located the head at some cut (false: history only). */
  known: boolean;
  /** Messages of the contents that may have been acknowledged already (the margin). */
  possiblyAcked: number;
  /** How the head was found, or why it did not move. */
  basis: string;
}

/** A marker's frontier: at `atMs`, every data record before `index` had left the ready list. */
interface FrontierSample {
  atMs: number;
  index: number;
}

/** What a capture read around one round: its marker and its fence. */
export interface RoundReading {
  /** Data messages before the marker, if the marker was read. */
  markerMessages: number | undefined;
  /** Data messages before the fence, and the fence's offset (the cut). */
  fenceMessages: number;
  fenceOffset: number;
}

/**
 * The head of one queue across rounds: the last committed head, the frontier samples the hold
 * bound needs, and the freeze a requeue starts.
 */
export class HeadTracker {
  private committed: Head;
  private samples: FrontierSample[] = [];
  /** After a requeue: counts are trusted again once the frontier reaches this data index. */
  private frozenUntil: number | undefined;

  constructor(
    base: { offset: number; messages: number; predating: number; known: boolean },
    private startOffset: number,
  ) {
    this.committed = { ...base, offset: Math.max(base.offset, startOffset), possiblyAcked: 0, basis: '' };
  }

  /** A queue with no checkpoint yet starts wherever its journal starts. */
  startedAt(offset: number): void {
    this.startOffset = offset;
    if (!this.committed.known && this.committed.messages === 0) this.committed = { ...this.committed, offset };
  }

  /** The head of the last committed cut. */
  get base(): Head {
    return this.committed;
  }

  /**
   * The head at a cut, from what the leader's census said and what the capture read. Records the
   * marker's frontier for later rounds (only the first reading of a marker counts).
   */
  headAt(census: QueueCensus | undefined, reading: RoundReading, index: DataIndex): Head {
    const prior = this.committed;
    const d0 = reading.markerMessages;
    // Records before `best` had all been delivered at the marker (the ready list is the newest R):
    // the contents before it may have been acknowledged. Unknown without a FIFO census.
    const best = census && !census.fallback && d0 !== undefined ? Math.max(0, Math.min(d0 - census.ready, reading.fenceMessages)) : undefined;
    const acked = (messages: number) => (best === undefined ? 0 : Math.max(0, best - messages));
    // A kept head keeps its own margin at least: what may have been acknowledged then still may.
    const keep = (why: string): Head => ({
      ...prior,
      offset: Math.min(prior.offset, reading.fenceOffset),
      possiblyAcked: prior.known ? Math.max(prior.possiblyAcked, acked(prior.messages)) : 0,
      basis: prior.known ? `earlier head kept: ${why}` : `history: ${why}`,
    });
    if (!census) return keep('no census this round');
    if (d0 === undefined) return keep("the round's marker was not read before its fence");
    if (census.fallback) return keep(census.fallback);
    // A stream keeps the segment it writes whatever its retention: one that was captured is never empty.
    if (census.stream && census.ready === 0 && d0 > 0) return keep('the stream read as empty, though messages were captured from it');
    const frontier = d0 - census.ready;
    this.sample(census.markerAtMs, frontier, census.maxHoldMs);
    if (census.requeued) {
      this.frozenUntil = Math.max(this.frozenUntil ?? 0, d0);
      return keep('messages were requeued; the head waits until everything then in the queue was delivered again');
    }
    if (this.frozenUntil !== undefined) {
      if (frontier < this.frozenUntil) return keep(`requeued messages may still be in the queue (delivered up to message ${frontier} of ${this.frozenUntil})`);
      this.frozenUntil = undefined;
    }
    let candidate = d0 - (census.ready + census.unackedBound + census.margin);
    let basis = census.stream
      ? `retained ${census.ready} (the stream's offsets) + margin ${census.margin} at the marker`
      : `ready ${census.ready} + unacknowledged bound ${census.unackedBound} + margin ${census.margin} at the marker`;
    if (census.maxHoldMs > 0) {
      const old = this.latestAtOrBefore(census.markerAtMs - census.maxHoldMs);
      if (!old) return keep(`no marker ${census.maxHoldMs} ms old yet (the hold bound)`);
      if (old.index < candidate) {
        candidate = old.index;
        basis = `delivery frontier of a marker at least ${census.maxHoldMs} ms older (the hold bound)`;
      }
    }
    if (candidate < 0) {
      // More held messages than records: the rest were in the queue before protection began.
      if (prior.messages > 0) return keep('the count reaches before the earlier head');
      const predating = census.stream ? streamPredating(census, reading) : -candidate;
      const why = predating > 0 ? `${predating} held message(s) predate protection` : 'everything captured is still held';
      return { offset: this.startOffset, messages: 0, predating, known: true, possiblyAcked: acked(0), basis: `${basis}; ${why}` };
    }
    if (candidate <= prior.messages) return { ...keep('this census does not place it further'), known: true, predating: 0, possiblyAcked: acked(prior.messages) };
    if (candidate >= reading.fenceMessages) {
      return { offset: reading.fenceOffset, messages: reading.fenceMessages, predating: 0, known: true, possiblyAcked: 0, basis };
    }
    const offset = index.offsetOf(candidate);
    if (offset === undefined) return keep('the head lies before what this capture read');
    return { offset, messages: candidate, predating: 0, known: true, possiblyAcked: acked(candidate), basis };
  }

  /** The cut whose head is `head` committed: it is the floor of every later head. */
  commit(head: Head, index: DataIndex): void {
    this.committed = head;
    index.forgetBefore(head.messages);
  }

  private sample(atMs: number, index: number, maxHoldMs: number): void {
    const last = this.samples[this.samples.length - 1];
    if (last && last.atMs >= atMs) return; // the same marker read again (a repeated PREPARE), or an older leader's clock
    this.samples.push({ atMs, index });
    // Keep the latest sample old enough for the hold bound, and every newer one.
    const floor = this.latestAtOrBefore(atMs - maxHoldMs);
    if (floor) this.samples = this.samples.filter((s) => s.atMs >= floor.atMs);
  }

  private latestAtOrBefore(atMs: number): FrontierSample | undefined {
    let found: FrontierSample | undefined;
    for (const s of this.samples) if (s.atMs <= atMs) found = s;
    return found;
  }
}

/**
 * How many messages a stream source retained from before protection began. Its extent was read
 * between the marker and the fence, so it counts at most the records captured by the fence besides
 * those: the excess over them is certain. (The margin covers copies committing late, which makes
 * the head earlier; counting it here would mark every stream incomplete for as long as its
 * retention keeps everything captured.)
 */
function streamPredating(census: QueueCensus, reading: RoundReading): number {
  return Math.max(0, census.ready - reading.fenceMessages);
}
