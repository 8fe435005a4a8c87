/**
 * What a new leader's recovery decides (RecoveryPlan), without Redis or a store: the same machine
 * recovery.ts executes and the simulation (test/sim/recovery-runner.ts) runs.
 */
import { describe, expect, it } from 'vitest';
import type { CommitRecord, DecisionRecord } from '../../services/core/state/decision-log.js';
import { PRESUMED_ABORT_REASON, RecoveryPlan, RESEND_EPOCHS, resendRequests, stagedMismatch, type RecoveryStep } from '../../services/coordinator/recovery-plan.js';
import type { CheckpointManifest, QueueCheckpoint } from '../../services/gen/tidemark/v1/store.js';
import { Decision } from '../../services/gen/tidemark/v1/worker.js';

function commitOf(epoch: number): CommitRecord {
  return {
    roundId: `r-${epoch}`,
    parentEpoch: epoch - 1,
    startedAtMs: 1,
    fencedAtMs: 2,
    leaderToken: 1,
    coordinatorId: 'c0',
    fenceExchange: 'tidemark.fence',
    vhosts: ['/'],
    exchanges: [],
    partitions: [{ workerId: 'w0', key: `staging/${epoch}/w0`, sha256: 'abc' }],
  };
}

function record(epoch: number, state: DecisionRecord['state'], commit = false): DecisionRecord {
  return { epoch, roundId: `r-${epoch}`, state, reason: '', leaderToken: 1, atMs: 100 + epoch, commit: commit ? commitOf(epoch) : undefined };
}

/** Runs the plan to its end; `finish` says how each finish step went. */
function run(plan: RecoveryPlan, finish: (step: Extract<RecoveryStep, { kind: 'finish' }>) => 'finished' | 'unfinishable' = () => 'finished'): RecoveryStep[] {
  const steps: RecoveryStep[] = [];
  for (let step = plan.step(500); step; step = plan.step(500)) {
    steps.push(step);
    if (step.kind === 'record') plan.recorded(step);
    else if (finish(step) === 'finished') plan.finished(step);
    else plan.unfinishable(step);
  }
  return steps;
}

describe('RecoveryPlan', () => {
  it('presumes abort for a started epoch, written with the new leader token and re-sent as ABORT', () => {
    const plan = new RecoveryPlan([record(3, 'started')], [], 9);
    const steps = run(plan);
    expect(steps).toEqual([{ kind: 'record', epoch: 3, record: { ...record(3, 'started'), state: 'aborted', reason: PRESUMED_ABORT_REASON, leaderToken: 9, atMs: 500 } }]);
    expect(plan.report).toEqual({ presumedAborted: [3], finished: [], unfinishable: [], decided: [{ epoch: 3, roundId: 'r-3', outcome: 'aborted' }] });
  });

  it('finishes a committed epoch without a manifest, and re-sends COMMIT only once it is visible', () => {
    const finished = new RecoveryPlan([record(4, 'committed', true)], [], 2);
    expect(run(finished).map((s) => `${s.kind} ${s.epoch}`)).toEqual(['finish 4']);
    expect(finished.report.finished).toEqual([4]);
    expect(finished.report.decided).toEqual([{ epoch: 4, roundId: 'r-4', outcome: 'committed' }]);

    const lost = new RecoveryPlan([record(4, 'committed', true)], [], 2);
    run(lost, () => 'unfinishable');
    expect(lost.report.unfinishable).toEqual([4]);
    expect(lost.report.decided).toEqual([]);
  });

  it('leaves visible commits, aborts and commits without a commit record alone', () => {
    const plan = new RecoveryPlan([record(1, 'committed', true), record(2, 'aborted'), record(3, 'committed')], [1], 2);
    expect(run(plan)).toEqual([]);
    expect(plan.report.decided.map((d) => `${d.outcome} ${d.epoch}`)).toEqual(['committed 1', 'aborted 2']);
  });

  it(`re-sends the decisions of the ${RESEND_EPOCHS} newest recorded epochs only`, () => {
    const records = Array.from({ length: RESEND_EPOCHS + 4 }, (_, i) => record(i + 1, 'aborted'));
    const plan = new RecoveryPlan(records, [], 2);
    run(plan);
    expect(plan.report.decided.map((d) => d.epoch)).toEqual(records.slice(4).map((r) => r.epoch));
  });

  it('takes a staged partition only with the sha256 its worker voted with', () => {
    const p = commitOf(4).partitions[0];
    expect(stagedMismatch(p, 'abc')).toBeUndefined();
    expect(stagedMismatch(p, 'abd')).toContain('voted with abc');
  });
});

describe('RecoveryPlan: rounds with queues outside their cut (G8)', () => {
  const outside = { vhost: '/', queue: 'stuck', sinceEpoch: 3, sinceMs: 50, reason: 'journal deleted' };
  const partialRecord = (epoch: number): DecisionRecord => ({ ...record(epoch, 'committed'), commit: { ...commitOf(epoch), outside: [outside] } });

  it('asks for the parent checkpoint when finishing a round that carries queues from it, and not otherwise', () => {
    const steps = run(new RecoveryPlan([partialRecord(4), record(6, 'committed', true)], [], 2));
    expect(steps.map((s) => (s.kind === 'finish' ? `${s.epoch}<-${s.parentEpoch}` : s.kind))).toEqual(['4<-3', '6<-0']);
  });

  it('carries the parent\'s entry into the finished manifest, marked outside the cut', () => {
    const plan = new RecoveryPlan([partialRecord(4)], [], 2);
    const step = plan.step(500) as Extract<RecoveryStep, { kind: 'finish' }>;
    const parentEntry = { definition: { vhost: '/', name: 'stuck' }, cutOffset: 40, messages: 4, baseEpoch: 2, segments: [], workerId: 'w1', incomplete: [] } as unknown as QueueCheckpoint;
    const parent = { epoch: 3, queues: [parentEntry] } as unknown as CheckpointManifest;
    const manifest = plan.manifest(step, [], parent);
    expect(manifest.queues).toEqual([{ ...parentEntry, outsideCut: { sinceEpoch: 3, sinceMs: 50, reason: 'journal deleted' } }]);
  });

  it('marks a visible partial commit for re-sending with what each worker counted, and re-sends ABORT to a worker none of whose queues counted', () => {
    const plan = new RecoveryPlan([partialRecord(4), record(5, 'committed', true)], [4, 5], 2);
    run(plan);
    expect(plan.report.decided).toEqual([
      { epoch: 4, roundId: 'r-4', outcome: 'committed', partial: true },
      { epoch: 5, roundId: 'r-5', outcome: 'committed' },
    ]);
    const [partial, whole] = plan.report.decided;
    // Without what the manifest counted, a partial COMMIT is not re-sent (the worker asks instead).
    expect(resendRequests(partial, ['w0', 'w1'], 7)).toEqual([]);
    partial.counted = new Map([['w0', [{ vhost: '/', queue: 'fine', census: undefined }]]]);
    expect(resendRequests(partial, ['w0', 'w1'], 7).map(({ workerId, request }) => [workerId, request.decision, request.counted.map((q) => q.queue)])).toEqual([
      ['w0', Decision.DECISION_COMMIT, ['fine']],
      ['w1', Decision.DECISION_ABORT, []],
    ]);
    // A round that took every vote whole re-sends COMMIT with an empty list (every queue), as before.
    expect(resendRequests(whole, ['w0'], 7)[0].request).toMatchObject({ decision: Decision.DECISION_COMMIT, counted: [], leaderToken: 7, epoch: 5 });
  });
});
