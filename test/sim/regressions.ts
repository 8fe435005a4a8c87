/**
 * Seeds that found bugs, replayed first by test/unit/simulation.test.ts. Each pins one schedule:
 * run with `context` and `broken` (merged, mergeOverrides), it must violate `violates`; run with
 * `context` alone (the protocol as it is now), the very same schedule must keep every invariant.
 * An entry without `broken` is a bug still open in the real code: only the violation is asserted,
 * and it gets a `broken` flag once the real code is fixed and the model follows.
 *
 * None of these is a bug in services/coordinator/checkpoint-round.ts: across 500,000+ schedules
 * (400,000 of them with heavy Redis loss and pauses) the real round machine kept every invariant. The bugs are in code around it (KnownGaps in
 * options.ts); the variants are deliberately broken protocols that prove the checker can fail.
 *
 * A change to the model reshuffles every schedule, so a pinned seed may stop finding its bug: find
 * a new one (run the schedules with the flag on, e.g. SIM_OPTIONS='{"gaps":{...:true}}') and check
 * its trace tells the same story.
 *
 * Eight seeds were found again when the simulation's capture moved to the shipped CaptureLedger,
 * whose cut needs the records below the fence durable and not the fence itself (the model had
 * required the fence too): each new seed violates the same invariant under the same flag and
 * passes without it, but the traces of the long stories (10253, 26943 and 11647 before) were not
 * re-read, so their epoch numbers may differ.
 *
 * Every seed below was found with all-or-nothing rounds, before G8 (a queue that cannot take part
 * is carried, not an abort) and before queue outages joined the fault mix: each replays with
 * `BEFORE_G8` under its context, which keeps its schedule as it was found. The G8 seeds come last.
 */
import type { InvariantName } from './invariants.js';
import { mergeOverrides, type OptionOverrides } from './options.js';

export interface Regression {
  seed: number;
  /** The bug, in one line. */
  bug: string;
  violates: InvariantName;
  /** Options of the schedule that found it (fault rates or flags the default mix does not have). */
  context?: OptionOverrides;
  /** What turns the bug on; without it the schedule must pass. */
  broken?: OptionOverrides;
}

/** Redis loss with two coordinators that pause often and a flaky store: where the Redis-loss bugs lived. */
const REDIS_LOSS_AND_PAUSES: OptionOverrides = { coordinators: 2, faults: { redisLoss: 0.1, pause: 0.1, storeError: 0.15 } };

/** The protocol and fault mix the seeds before G8 were found with: strict rounds, no queue outages. */
export const BEFORE_G8: OptionOverrides = { strictRounds: true, faults: { queueOutage: 0 } };

const FOUND_BEFORE_G8: Regression[] = [
  // Fixed in the real code; `broken` brings the old behaviour back (KnownGaps).
  {
    seed: 25,
    bug: 'recovery.ts: a transient store error while finishing a committed epoch made it "unfinishable" for good; it never became visible',
    violates: 'convergence',
    broken: { gaps: { recoveryGivesUpOnTransientErrors: true } },
  },
  {
    seed: 37364,
    bug: 'leader-lease.ts: recovery failed, then the lease release failed: the token stayed set and the coordinator renewed forever without leading',
    violates: 'convergence',
    broken: { gaps: { failedReleaseKeepsLease: true } },
  },
  {
    seed: 91,
    bug: 'coordinator.ts: a COMMIT whose write reply was lost stayed invisible until a leader change, and none came',
    violates: 'convergence',
    broken: { gaps: { inDoubtWaitsForLeaderChange: true } },
  },
  {
    seed: 18200,
    bug: 'leader-lease.ts: Redis lost, the same coordinator won the lease again with the same token and holder string `1:c0`, and a round begun under the old lease recorded its decision (ABORT here) under the new one',
    violates: 'fenced-writes',
    broken: { gaps: { holderWithoutNonce: true } },
  },
  {
    seed: 29,
    bug: 'coordinator.ts: the `started` write of a round landed but its reply was lost; round() threw without setting needsRecovery, so the epoch stayed `started` while this leader led',
    violates: 'convergence',
    broken: { gaps: { failedStartLeavesStarted: true } },
  },
  {
    seed: 1713,
    bug: 'Redis loss: c0 recorded COMMIT of epoch 2, its manifest write failed, and it paused past its lease; Redis was lost; c1 won with the same token 1 (the floor came from manifests only, and none was visible) and took epochs 1 and 2 again; c0 woke still believing it led, wrote manifest 2 and sent COMMIT, which workers took as their base; then c1 committed its own epoch 2 and replaced that checkpoint',
    violates: 'complete-manifest',
    context: REDIS_LOSS_AND_PAUSES,
    broken: { gaps: { floorFromManifestsOnly: true, leaderCheckIsBelief: true } },
  },
  {
    seed: 1713,
    bug: 'the same schedule with the epoch and token floors still from manifests only: the leader check that counts the lease time alone keeps c0 from writing its late manifest',
    violates: 'complete-manifest',
    context: { ...REDIS_LOSS_AND_PAUSES, gaps: { floorFromManifestsOnly: true } },
    broken: { gaps: { leaderCheckIsBelief: true } },
  },
  {
    seed: 11206,
    bug: 'Redis loss: c1 recorded COMMIT of epoch 2, passed its leader check and paused before the manifest PUT; Redis was lost; c0 won, took epoch 1 again (nothing was visible) and committed a later cut; c1 woke and its PUT of manifest 2 landed with the older cut: cuts ran backwards. The lease check cannot stop a PUT already past it; the staged floor (epoch 3 for c0) alone makes the late manifest harmless',
    violates: 'exact-prefix',
    context: { ...REDIS_LOSS_AND_PAUSES, pauseBetweenCheckAndWrite: true },
    broken: { gaps: { floorFromManifestsOnly: true } },
  },
  // Fixed in the checker: the behaviour is benign, the earlier invariant was too strict.
  {
    seed: 33936,
    bug: 'checker: c1 recorded COMMIT of epoch 4 and its manifest writes kept failing; Redis was lost, c1 lost the lease and won it again; workers asked, found no record and forgot the round; then c1 (a leader again) wrote the manifest. Benign: forgetting only keeps the older base',
    violates: 'single-outcome',
    context: REDIS_LOSS_AND_PAUSES,
    broken: { strictForget: true },
  },
  // Fixed in the real code (coordinator.ts re-takes the lease above the token a worker reports,
  // test/integration/recovery-paths.test.ts) but not yet in the model: only the violation of the
  // unfixed model is asserted (options.ts leaderMustOutrankWorkers).
  {
    seed: 1170,
    bug: 'Redis loss (liveness; the model lacks the fix): c0 won token 2 and re-sent ABORTs with it, so workers saw token 2, but nothing of c0 was staged or visible; Redis was lost and c0 won again with token 1 (the store floor was 0); workers refuse every call of it as stale, and no round commits again',
    violates: 'convergence',
    context: { leaderMustOutrankWorkers: true },
  },
  // Deliberately broken variants: the checker must catch each.
  { seed: 1, bug: 'variant: the leader commits when a PREPARE times out', violates: 'complete-manifest', broken: { variant: 'commit-on-timeout' } },
  { seed: 2, bug: 'variant: the manifest is written before COMMIT is recorded', violates: 'fenced-writes', broken: { variant: 'manifest-before-decision' } },
  // Seed 1 until the simulated worker voted per queue (G8): found again, the same story.
  { seed: 4, bug: 'variant: a worker adopts its base on a recorded COMMIT without a visible manifest', violates: 'visible-base', broken: { variant: 'adopt-base-on-commit-record' } },
  { seed: 91, bug: 'variant: the leader takes a COMMIT write whose reply was lost for ABORT and sends DECIDE ABORT', violates: 'single-outcome', broken: { variant: 'abort-when-in-doubt' } },
  { seed: 2, bug: 'variant: a worker votes YES before its segments up to the fence are durable', violates: 'exact-prefix', broken: { variant: 'vote-before-durable' } },
  { seed: 2, bug: 'variant: decision writes are not fenced by the lease', violates: 'fenced-writes', broken: { variant: 'unfenced-decisions' } },
  { seed: 1, bug: 'variant: recovery presumes COMMIT for a started epoch', violates: 'convergence', broken: { variant: 'presume-commit' } },
];

export const REGRESSIONS: Regression[] = [
  ...FOUND_BEFORE_G8.map((r) => ({ ...r, context: mergeOverrides(BEFORE_G8, r.context) })),
  // G8: one queue that cannot take part never stops the others; the real round carries it.
  {
    seed: 24,
    bug: "variant: q0's segment writes failed (a queue outage), so checkpoint 3 carried it from 2; worker w0 still adopted 3's cut as q0's base, which 3 does not hold",
    violates: 'counted-base',
    broken: { variant: 'adopt-uncounted-base' },
  },
];
