/** The leader's re-send queue (UndeliveredDecisions), the one decision-redelivery.ts and the simulation drive. */
import { describe, expect, it } from 'vitest';
import { UndeliveredDecisions } from '../../services/coordinator/undelivered-decisions.js';
import { Decision, type DecideRequest } from '../../services/gen/tidemark/v1/worker.js';

function decide(epoch: number, decision = Decision.DECISION_ABORT): DecideRequest {
  return { leaderToken: 1, epoch, roundId: `r-${epoch}`, decision, counted: [] };
}

describe('UndeliveredDecisions', () => {
  it('sends each worker its decisions oldest first, until each is settled', () => {
    const queue = new UndeliveredDecisions();
    queue.remember('w1', decide(1));
    queue.remember('w1', decide(2));
    queue.remember('w2', decide(1));
    expect([...queue.workers()]).toEqual(['w1', 'w2']);
    expect(queue.next('w1')?.epoch).toBe(1);
    queue.settled('w1', 'r-1');
    expect(queue.next('w1')?.epoch).toBe(2);
    queue.settled('w1', 'r-2');
    expect(queue.next('w1')).toBeUndefined();
    expect([...queue.workers()]).toEqual(['w2']);
  });

  it('keeps one decision per round: a later one replaces it in place', () => {
    const queue = new UndeliveredDecisions();
    queue.remember('w1', decide(1));
    queue.remember('w1', decide(2));
    queue.remember('w1', decide(1, Decision.DECISION_COMMIT));
    expect(queue.next('w1')).toEqual(decide(1, Decision.DECISION_COMMIT));
  });

  it('drops the decisions of a worker that left, and everything when a new leader starts over', () => {
    const queue = new UndeliveredDecisions();
    queue.remember('w1', decide(1));
    queue.remember('w2', decide(1));
    queue.drop('w1');
    expect(queue.next('w1')).toBeUndefined();
    expect(queue.size).toBe(1);
    queue.clear();
    expect(queue.size).toBe(0);
  });
});
