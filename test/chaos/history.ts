/**
 * A Jepsen-style history of a chaos run and its checker. Pure: no I/O, no clocks of its own.
 *
 * The history records every publish attempt (queue, message id, time, and whether the broker
 * confirmed it, or the connection died first so nobody knows), every causal pair (A confirmed
 * before B was published), and what each restored checkpoint held, queue by queue, in order.
 *
 * Publish order is tracked with a logical clock: every attempt and every confirm takes the next
 * tick, in the order the producer saw them. "x confirmed before y was attempted" is then exact,
 * with no reliance on millisecond timestamps.
 *
 * The checker counts, over every restored checkpoint:
 * - lost: a confirmed message missing from a checkpoint that must hold it. It must when it was
 *   confirmed before the round began (so before the fence was published: G4), or when the same
 *   queue's restore holds a message attempted after this one was confirmed (a hole in the
 *   prefix: G2). For the final checkpoint, taken after publishing stopped, that is every
 *   confirmed message.
 * - duplicated: every occurrence of a message id beyond its first in one restored queue.
 * - unexpected: a restored message whose id was never attempted, or was attempted to another
 *   queue, or that has no id.
 * - reordered: a restored message that comes after one attempted later than it was confirmed
 *   (the broker appends a confirmed message before any later publish, so this is Tidemark's doing).
 * - causal: a pair whose B is restored while its A is not, in any restored checkpoint.
 *
 * Losses the product owned up to are told apart from silent ones. A checkpoint may mark a queue
 * as possibly incomplete (the broker restarted, and RabbitMQ can confirm a publish whose copy in
 * the journal it never writes). A message lost from a marked queue counts as `lostMarked`, and a
 * causal violation whose A is in a marked queue as `causalMarked`, but only when the message is
 * missing from the queue's journal too (read directly at the end of the run, see `journals`): a
 * message the journal holds and a checkpoint lacks is Tidemark's loss, marked or not, and counts
 * as `lost`. `lost` and `causal` are the silent ones that fail a run.
 *
 * `journalMissing` counts confirmed messages that the journals never received: what the broker
 * dropped, whatever any checkpoint says.
 *
 * A message whose outcome is unknown (its connection died before the confirm) may or may not be
 * restored: it never counts as lost, nor as unexpected.
 */

export type PublishStatus = 'pending' | 'confirmed' | 'unknown';

export interface PublishAttempt {
  queue: string;
  id: string;
  /** Position among all attempts to this queue, from 0 (the publish order). */
  seq: number;
  attemptAtMs: number;
  /** Logical time of the attempt. */
  attemptTick: number;
  status: PublishStatus;
  confirmedAtMs?: number;
  /** Logical time the confirm arrived. */
  confirmTick?: number;
}

export interface CausalPair {
  queueA: string;
  a: string;
  queueB: string;
  b: string;
}

export interface RestoredCheckpoint {
  epoch: number;
  /** What the checkpoint was taken after, for the report ('final', 'after worker-kill', ...). */
  label: string;
  /**
   * Messages confirmed before this time must be in it: the round's start (the fence is published
   * after it). Compared with the producers' confirm times, so both must come from one clock.
   */
  mustHoldConfirmedBeforeMs: number;
  /** Message ids (undefined for a message without one) of each restored queue, in order. */
  queues: Map<string, Array<string | undefined>>;
  /** Queues the checkpoint marks as possibly incomplete. */
  incomplete?: Set<string>;
  /**
   * Queues the checkpoint carries from an older cut (G8, outside its cut), with that cut's round
   * start: what they must hold; they are outside the consistent cut, so no causal pair spans them.
   */
  outside?: Map<string, number>;
}

export type Counter = 'lost' | 'duplicated' | 'unexpected' | 'reordered' | 'causal' | 'lostMarked' | 'causalMarked';

/** The counters that fail a run: anything wrong that no checkpoint owned up to. */
export const COUNTERS: readonly Counter[] = ['lost', 'duplicated', 'unexpected', 'reordered', 'causal'];
/** Losses in queues the checkpoint marked as possibly incomplete, of messages the broker never wrote to the journal. */
export const MARKED_COUNTERS: readonly Counter[] = ['lostMarked', 'causalMarked'];

export type Counts = Record<Counter, number>;

export interface CheckpointVerdict extends Counts {
  epoch: number;
  label: string;
  /** Messages restored, over all queues. */
  restored: number;
  /** A few findings per counter, to print. */
  examples: string[];
}

export interface Verdict extends Counts {
  checkpoints: CheckpointVerdict[];
  /** Confirmed messages missing from their queue's journal (undefined when journals were not read). */
  journalMissing?: number;
  attempts: number;
  confirmed: number;
  unknown: number;
  pairs: number;
}

/** How many examples a checkpoint verdict keeps per counter. */
const EXAMPLES_PER_COUNTER = 3;

export function zeroCounts(): Counts {
  return { lost: 0, duplicated: 0, unexpected: 0, reordered: 0, causal: 0, lostMarked: 0, causalMarked: 0 };
}

export class History {
  private clock = 0;
  private readonly attempts = new Map<string, PublishAttempt>();
  private readonly perQueue = new Map<string, PublishAttempt[]>();
  private readonly pairs: CausalPair[] = [];
  private readonly restores: RestoredCheckpoint[] = [];
  /** Message ids each queue's journal holds, once read. */
  private journalIds: Map<string, Set<string>> | undefined;

  /** Records an attempt to publish message `id` to `queue`; ids are never reused. */
  attempt(queue: string, id: string, atMs: number): PublishAttempt {
    if (this.attempts.has(id)) throw new Error(`message id ${id} was attempted twice: a history needs unique ids`);
    const list = this.perQueue.get(queue) ?? [];
    this.perQueue.set(queue, list);
    const attempt: PublishAttempt = { queue, id, seq: list.length, attemptAtMs: atMs, attemptTick: ++this.clock, status: 'pending' };
    list.push(attempt);
    this.attempts.set(id, attempt);
    return attempt;
  }

  /** The broker confirmed `id`. */
  confirm(id: string, atMs: number): void {
    const attempt = this.get(id);
    if (attempt.status !== 'pending') return;
    attempt.status = 'confirmed';
    attempt.confirmedAtMs = atMs;
    attempt.confirmTick = ++this.clock;
  }

  /** No confirm will come for `id` (nack, closed channel, timeout): it may or may not be stored. */
  unknown(id: string): void {
    const attempt = this.get(id);
    if (attempt.status === 'pending') attempt.status = 'unknown';
  }

  /** B is about to be published, and A was confirmed before. */
  causal(pair: CausalPair): void {
    const a = this.get(pair.a);
    if (a.status !== 'confirmed') throw new Error(`causal pair ${pair.a} -> ${pair.b}: ${pair.a} is not confirmed`);
    this.pairs.push(pair);
  }

  restored(checkpoint: RestoredCheckpoint): void {
    this.restores.push(checkpoint);
  }

  /** What each queue's journal holds (message ids), read directly from the broker. */
  journals(ids: Map<string, Set<string>>): void {
    this.journalIds = ids;
  }

  /** True when a loss of `id` from `queue` in `restore` is owned up to: marked, and not in the journal. */
  private marked(restore: RestoredCheckpoint, queue: string, id: string): boolean {
    if (!restore.incomplete?.has(queue)) return false;
    // Without the journals it cannot be told whether Tidemark lost it: not owned up to.
    return this.journalIds !== undefined && !this.journalIds.get(queue)?.has(id);
  }

  /** Attempts to one queue, in publish order. */
  attemptsTo(queue: string): readonly PublishAttempt[] {
    return this.perQueue.get(queue) ?? [];
  }

  /** Checks every restored checkpoint against the history; see the module comment. */
  check(): Verdict {
    const checkpoints = this.restores.map((r) => this.checkOne(r));
    const verdict: Verdict = {
      ...zeroCounts(),
      checkpoints,
      attempts: this.attempts.size,
      confirmed: 0,
      unknown: 0,
      pairs: this.pairs.length,
    };
    for (const c of checkpoints) for (const counter of [...COUNTERS, ...MARKED_COUNTERS]) verdict[counter] += c[counter];
    for (const a of this.attempts.values()) {
      if (a.status === 'confirmed') verdict.confirmed += 1;
      else verdict.unknown += 1;
    }
    if (this.journalIds) {
      verdict.journalMissing = [...this.attempts.values()].filter((a) => a.status === 'confirmed' && !this.journalIds!.get(a.queue)?.has(a.id)).length;
    }
    return verdict;
  }

  private get(id: string): PublishAttempt {
    const attempt = this.attempts.get(id);
    if (!attempt) throw new Error(`message id ${id} was never attempted`);
    return attempt;
  }

  private checkOne(restore: RestoredCheckpoint): CheckpointVerdict {
    const verdict: CheckpointVerdict = { epoch: restore.epoch, label: restore.label, restored: 0, examples: [], ...zeroCounts() };
    const shown = zeroCounts();
    const note = (counter: Counter, text: string) => {
      verdict[counter] += 1;
      if (shown[counter] < EXAMPLES_PER_COUNTER) {
        shown[counter] += 1;
        verdict.examples.push(`${counter}: ${text}`);
      }
    };
    const present = new Map<string, Set<string>>();
    const queues = new Set([...this.perQueue.keys(), ...restore.queues.keys()]);
    for (const queue of queues) {
      const ids = restore.queues.get(queue) ?? [];
      verdict.restored += ids.length;
      const seen = new Set<string>();
      present.set(queue, seen);
      // The latest attempt among restored messages so far; and over the whole queue.
      let latestAttemptSoFar = 0;
      let latestAttempt = 0;
      ids.forEach((id, position) => {
        if (id === undefined) return note('unexpected', `${queue}[${position}] has no message id`);
        if (seen.has(id)) return note('duplicated', `${queue}[${position}] ${id} again`);
        seen.add(id);
        const attempt = this.attempts.get(id);
        if (!attempt) return note('unexpected', `${queue}[${position}] ${id} was never published`);
        if (attempt.queue !== queue) return note('unexpected', `${queue}[${position}] ${id} was published to ${attempt.queue}`);
        if (attempt.confirmTick !== undefined && attempt.confirmTick < latestAttemptSoFar) {
          note('reordered', `${queue}[${position}] ${id} (seq ${attempt.seq}) comes after a message published once it was confirmed`);
        }
        latestAttemptSoFar = Math.max(latestAttemptSoFar, attempt.attemptTick);
        latestAttempt = latestAttemptSoFar;
      });
      for (const attempt of this.perQueue.get(queue) ?? []) {
        if (attempt.status !== 'confirmed' || seen.has(attempt.id)) continue;
        const counter = this.marked(restore, queue, attempt.id) ? 'lostMarked' : 'lost';
        const mustHoldBeforeMs = restore.outside?.get(queue) ?? restore.mustHoldConfirmedBeforeMs;
        if (attempt.confirmedAtMs! < mustHoldBeforeMs) {
          note(counter, `${queue} ${attempt.id} (seq ${attempt.seq}) confirmed ${mustHoldBeforeMs - attempt.confirmedAtMs!} ms before the round ${restore.outside?.has(queue) ? 'of its carried cut ' : ''}began`);
        } else if (attempt.confirmTick! < latestAttempt) {
          note(counter, `${queue} ${attempt.id} (seq ${attempt.seq}) is missing while a message published after its confirm is restored`);
        }
      }
    }
    for (const pair of this.pairs) {
      if (restore.outside?.has(pair.queueA) || restore.outside?.has(pair.queueB)) continue;
      if (present.get(pair.queueB)?.has(pair.b) && !present.get(pair.queueA)?.has(pair.a)) {
        note(this.marked(restore, pair.queueA, pair.a) ? 'causalMarked' : 'causal', `${pair.queueB} holds ${pair.b} but ${pair.queueA} lacks ${pair.a}`);
      }
    }
    return verdict;
  }
}
