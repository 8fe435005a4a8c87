import { describe, expect, it } from 'vitest';
import { DecisionsInFlight } from '../../services/coordinator/decisions-in-flight.js';
import { Decision, type DecideRequest } from '../../services/gen/tidemark/v1/worker.js';

const decide = (epoch: number, decision = Decision.DECISION_COMMIT): DecideRequest => ({ leaderToken: 1, epoch, roundId: `r${epoch}`, decision, counted: [] });
const epochs = (inFlight: DecisionsInFlight, nowMs: number, queued: DecideRequest[] = []) => inFlight.protections(nowMs, queued).map((p) => p.epoch);

describe('COMMITs a worker may still apply (retention keeps their checkpoints)', () => {
  it('holds an epoch while its COMMIT is being sent, and for the DECIDE deadline after the send ended', () => {
    const inFlight = new DecisionsInFlight(5_000);
    inFlight.sending(decide(7));
    inFlight.sending(decide(7));
    expect(epochs(inFlight, 0)).toEqual([7]);
    inFlight.ended(decide(7), 1_000);
    expect(epochs(inFlight, 10_000), 'one of two sends is still outstanding').toEqual([7]);
    inFlight.ended(decide(7), 2_000);
    expect(epochs(inFlight, 6_999)).toEqual([7]);
    expect(epochs(inFlight, 7_000)).toEqual([]);
  });

  it('holds an epoch whose COMMIT is queued to re-send, and ignores ABORTs', () => {
    const inFlight = new DecisionsInFlight(5_000);
    inFlight.sending(decide(3, Decision.DECISION_ABORT));
    expect(epochs(inFlight, 0, [decide(4), decide(5, Decision.DECISION_ABORT)])).toEqual([4]);
    expect(inFlight.protections(0, [decide(4)])[0].reason).toMatch(/COMMIT a worker may still apply/);
  });
});
