/**
 * A worker's participant decisions (Participant), without I/O: the same machine worker.ts drives
 * and the simulation's worker (test/sim/worker-node.ts) drives.
 */
import { describe, expect, it } from 'vitest';
import { StaleLeaderError } from '../../services/core/errors.js';
import { Decision, type PrepareRequest } from '../../services/gen/tidemark/v1/worker.js';
import type { QueueCheckpoint } from '../../services/gen/tidemark/v1/store.js';
import { queueKey } from '../../services/core/format/queue-key.js';
import { countedOf, DECIDED_KEPT, failedReason, INQUIRY_AFTER_LEASES, Participant, splitOutcomes } from '../../services/worker/participant.js';

function prepare(epoch: number, leaderToken = 1, roundId = `r-${epoch}`): PrepareRequest {
  return { epoch, roundId, leaderToken } as PrepareRequest;
}

describe('Participant', () => {
  it('refuses a leader token below the newest seen, starting from the floor it was given', () => {
    const p = new Participant<string>(5);
    expect(() => p.checkToken(4)).toThrow(StaleLeaderError);
    p.checkToken(7);
    expect(p.seenToken).toBe(7);
    expect(() => p.prepare(prepare(1, 6))).toThrow(StaleLeaderError);
  });

  it('takes a repeated PREPARE for the same round, and forgets a NO so a retry tries again', () => {
    const p = new Participant<string>();
    expect(p.prepare(prepare(1))).toEqual({ kind: 'new' });
    const round = p.begin(prepare(1), 'vote promise');
    expect(p.prepare(prepare(1))).toEqual({ kind: 'repeat', round });
    p.voted(round, false, 10);
    expect(p.prepare(prepare(1))).toEqual({ kind: 'new' });
  });

  it('answers NO to a PREPARE of a decided round, and ends the round on its decision', () => {
    const p = new Participant<string>();
    const round = p.begin(prepare(2), 'x');
    p.voted(round, true, 10);
    expect(p.undecided()).toEqual([round]);
    p.learned('r-2', 'committed');
    expect(p.undecided()).toEqual([]);
    expect(p.prepare(prepare(2))).toEqual({ kind: 'decided', reason: 'round r-2 of epoch 2 was already decided (committed)' });
  });

  it('does not keep a round decided while it was being prepared', () => {
    const p = new Participant<string>();
    const round = p.begin(prepare(3), 'x');
    p.learned('r-3', 'aborted');
    p.voted(round, true, 10);
    expect(p.undecided()).toEqual([]);
  });

  it(`asks about a round voted YES in ${INQUIRY_AFTER_LEASES} lease times ago or more`, () => {
    const p = new Participant<string>();
    const old = p.begin(prepare(1), 'x');
    const recent = p.begin(prepare(2), 'y');
    p.begin(prepare(3), 'still preparing');
    p.voted(old, true, 1_000);
    p.voted(recent, true, 2_500);
    expect(p.due(1_000 + INQUIRY_AFTER_LEASES * 1_000, 1_000)).toEqual([old]);
  });

  it(`remembers the newest ${DECIDED_KEPT} decided rounds`, () => {
    const p = new Participant<string>();
    for (let e = 1; e <= DECIDED_KEPT + 1; e += 1) p.learned(`r-${e}`, 'aborted');
    expect(p.prepare(prepare(1, 1)).kind).toBe('new');
    expect(p.prepare(prepare(2, 1)).kind).toBe('decided');
  });
});

describe('per-queue votes and counted decisions (G8)', () => {
  const part = (queue: string) => ({ definition: { vhost: '/', name: queue } }) as QueueCheckpoint;

  it('votes the queues it could prepare and lists the others with their reasons', () => {
    const { parts, failed } = splitOutcomes([
      { vhost: '/', queue: 'a', part: part('a') },
      { vhost: '/', queue: 'b', failure: 'journal tidemark.journal.b was deleted' },
      { vhost: '/', queue: 'c', part: part('c') },
    ]);
    expect(parts.map((p) => p.definition!.name)).toEqual(['a', 'c']);
    expect(failed).toEqual([{ vhost: '/', queue: 'b', reason: 'journal tidemark.journal.b was deleted' }]);
    expect(failedReason('w1', failed)).toBe('worker w1: //b: journal tidemark.journal.b was deleted');
  });

  it('adopts a COMMIT only for the queues it counted; an empty list (an older leader) means all; ABORT means none', () => {
    const ref = (queue: string) => ({ vhost: '/', queue, census: undefined });
    expect(countedOf({ decision: Decision.DECISION_COMMIT, counted: [ref('a')] })).toEqual(new Set([queueKey('/', 'a')]));
    expect(countedOf({ decision: Decision.DECISION_COMMIT, counted: [] })).toBeUndefined();
    expect(countedOf({ decision: Decision.DECISION_ABORT, counted: [ref('a')] })).toEqual(new Set());
  });
});
