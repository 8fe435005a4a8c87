/**
 * The chaos history checker: a clean history counts nothing, and every counter moves on a
 * crafted history that breaks its property, and only that counter.
 */
import { describe, expect, it } from 'vitest';
import { History, zeroCounts, type Counts, type Verdict } from '../chaos/history.js';

/** A producer's pairs A_i -> B_i, each published after the previous message was confirmed. */
function publishPairs(history: History, pairs: number, startMs = 1_000): void {
  let t = startMs;
  for (let i = 0; i < pairs; i += 1) {
    history.attempt('qa', `a-${i}`, t);
    history.confirm(`a-${i}`, (t += 1));
    history.causal({ queueA: 'qa', a: `a-${i}`, queueB: 'qb', b: `b-${i}` });
    history.attempt('qb', `b-${i}`, (t += 1));
    history.confirm(`b-${i}`, (t += 1));
    t += 1;
  }
}

const ids = (prefix: string, from: number, to: number) => Array.from({ length: to - from }, (_, k) => `${prefix}-${from + k}`);

function counts(verdict: Verdict): Counts {
  const { lost, duplicated, unexpected, reordered, causal, lostMarked, causalMarked } = verdict;
  return { lost, duplicated, unexpected, reordered, causal, lostMarked, causalMarked };
}

const only = (counter: keyof Counts, n: number): Counts => ({ ...zeroCounts(), [counter]: n });

describe('the chaos history checker', () => {
  it('counts nothing for exact prefixes, before and after publishing stopped', () => {
    const h = new History();
    publishPairs(h, 10);
    // A round that began at t=1012 (after pair 2 was confirmed at 1011): the cut may fall later.
    h.restored({ epoch: 1, label: 'mid', mustHoldConfirmedBeforeMs: 1_012, queues: new Map([['qa', ids('a', 0, 4)], ['qb', ids('b', 0, 3)]]) });
    h.restored({ epoch: 2, label: 'final', mustHoldConfirmedBeforeMs: 5_000, queues: new Map([['qa', ids('a', 0, 10)], ['qb', ids('b', 0, 10)]]) });
    const verdict = h.check();
    expect(counts(verdict)).toEqual(zeroCounts());
    expect(verdict.confirmed).toBe(20);
    expect(verdict.pairs).toBe(10);
  });

  it('counts a confirmed message missing from a checkpoint begun after its confirm as lost', () => {
    const h = new History();
    publishPairs(h, 5);
    h.restored({ epoch: 1, label: 'final', mustHoldConfirmedBeforeMs: 5_000, queues: new Map([['qa', ids('a', 0, 5)], ['qb', ids('b', 0, 4)]]) });
    expect(counts(h.check())).toEqual(only('lost', 1));
  });

  it('counts a hole in a prefix as lost, even when the round began before the confirm', () => {
    const h = new History();
    publishPairs(h, 5);
    // b-2 is missing although b-3, published after b-2 was confirmed, is restored.
    h.restored({ epoch: 1, label: 'mid', mustHoldConfirmedBeforeMs: 0, queues: new Map([['qa', ids('a', 0, 5)], ['qb', ['b-0', 'b-1', 'b-3']]]) });
    expect(counts(h.check())).toEqual(only('lost', 1));
  });

  it('lets a message of unknown outcome be present or absent', () => {
    const h = new History();
    h.attempt('qa', 'a-0', 1);
    h.confirm('a-0', 2);
    h.attempt('qa', 'a-1', 3);
    h.unknown('a-1');
    h.attempt('qa', 'a-2', 4);
    h.confirm('a-2', 5);
    h.restored({ epoch: 1, label: 'with', mustHoldConfirmedBeforeMs: 100, queues: new Map([['qa', ['a-0', 'a-1', 'a-2']]]) });
    h.restored({ epoch: 2, label: 'without', mustHoldConfirmedBeforeMs: 100, queues: new Map([['qa', ['a-0', 'a-2']]]) });
    expect(counts(h.check())).toEqual(zeroCounts());
  });

  it('counts a message restored twice in one queue as duplicated', () => {
    const h = new History();
    publishPairs(h, 3);
    h.restored({ epoch: 1, label: 'final', mustHoldConfirmedBeforeMs: 5_000, queues: new Map([['qa', ['a-0', 'a-1', 'a-1', 'a-2']], ['qb', ids('b', 0, 3)]]) });
    expect(counts(h.check())).toEqual(only('duplicated', 1));
  });

  it('counts messages never published, published elsewhere, or without an id as unexpected', () => {
    const h = new History();
    publishPairs(h, 3);
    h.restored({
      epoch: 1,
      label: 'final',
      mustHoldConfirmedBeforeMs: 5_000,
      queues: new Map([
        ['qa', [...ids('a', 0, 3), 'ghost', 'b-0']],
        ['qb', [...ids('b', 0, 3), undefined]],
      ]),
    });
    expect(counts(h.check())).toEqual(only('unexpected', 3));
  });

  it('counts a message restored after one published once it was confirmed as reordered', () => {
    const h = new History();
    publishPairs(h, 4);
    h.restored({ epoch: 1, label: 'final', mustHoldConfirmedBeforeMs: 5_000, queues: new Map([['qa', ['a-0', 'a-2', 'a-1', 'a-3']], ['qb', ids('b', 0, 4)]]) });
    expect(counts(h.check())).toEqual(only('reordered', 1));
  });

  it('does not call concurrent publishes reordered', () => {
    const h = new History();
    // Both in flight at once (a pipelining producer): either order is a valid journal.
    h.attempt('qa', 'x', 1);
    h.attempt('qa', 'y', 2);
    h.confirm('y', 3);
    h.confirm('x', 4);
    h.restored({ epoch: 1, label: 'final', mustHoldConfirmedBeforeMs: 10, queues: new Map([['qa', ['y', 'x']]]) });
    expect(counts(h.check())).toEqual(zeroCounts());
  });

  it('counts a B restored without its A as causal, in an intermediate checkpoint too', () => {
    const h = new History();
    publishPairs(h, 4);
    // The round began before a-3 was confirmed, so a-3 may be missing - but then b-3 must be too.
    h.restored({ epoch: 1, label: 'mid', mustHoldConfirmedBeforeMs: 1_000, queues: new Map([['qa', ids('a', 0, 3)], ['qb', ids('b', 0, 4)]]) });
    h.restored({ epoch: 2, label: 'final', mustHoldConfirmedBeforeMs: 5_000, queues: new Map([['qa', ids('a', 0, 4)], ['qb', ids('b', 0, 4)]]) });
    const verdict = h.check();
    expect(counts(verdict)).toEqual(only('causal', 1));
    expect(verdict.checkpoints.map((c) => c.causal)).toEqual([1, 0]);
    expect(verdict.checkpoints[0].examples[0]).toContain('b-3');
  });

  it('refuses a reused message id and a pair whose A is not confirmed', () => {
    const h = new History();
    h.attempt('qa', 'a-0', 1);
    expect(() => h.attempt('qa', 'a-0', 2)).toThrow(/twice/);
    expect(() => h.causal({ queueA: 'qa', a: 'a-0', queueB: 'qb', b: 'b-0' })).toThrow(/not confirmed/);
  });

  it('tells losses a checkpoint marked, of messages the broker never wrote to the journal, from silent ones', () => {
    const h = new History();
    publishPairs(h, 10);
    // a-3 and a-4 are missing from the restore; b-4 (published after a-4 was confirmed) is there.
    const queues = new Map([['qa', [...ids('a', 0, 3), ...ids('a', 5, 10)]], ['qb', ids('b', 0, 10)]]);
    // Unmarked: both losses, and the causal violation of pairs 3 and 4, are silent.
    h.restored({ epoch: 1, label: 'unmarked', mustHoldConfirmedBeforeMs: 5_000, queues });
    // Marked, and the journal lacks a-3 but holds a-4: a-3 is owned up to, a-4 is Tidemark's loss.
    h.restored({ epoch: 2, label: 'marked', mustHoldConfirmedBeforeMs: 5_000, queues, incomplete: new Set(['qa']) });
    h.journals(new Map([['qa', new Set(ids('a', 0, 10).filter((id) => id !== 'a-3'))], ['qb', new Set(ids('b', 0, 10))]]));
    const verdict = h.check();
    expect(counts({ ...verdict, checkpoints: [], ...verdict.checkpoints[0] } as Verdict)).toEqual({ ...zeroCounts(), lost: 2, causal: 2 });
    expect(counts({ ...verdict, ...verdict.checkpoints[1] } as Verdict)).toEqual({ ...zeroCounts(), lost: 1, causal: 1, lostMarked: 1, causalMarked: 1 });
    expect(verdict.journalMissing).toBe(1);
  });

  it('does not count a marked loss as owned up to when the journals were not read', () => {
    const h = new History();
    publishPairs(h, 5);
    h.restored({ epoch: 1, label: 'marked', mustHoldConfirmedBeforeMs: 5_000, queues: new Map([['qa', ids('a', 0, 4)], ['qb', ids('b', 0, 5)]]), incomplete: new Set(['qa']) });
    expect(counts(h.check())).toEqual({ ...zeroCounts(), lost: 1, causal: 1 });
  });
});
