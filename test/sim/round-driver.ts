/**
 * Drives the REAL round state machine (services/coordinator/checkpoint-round.ts) in the simulated
 * world, the way services/coordinator/round-runner.ts drives it in the real one: every effect
 * becomes a simulated fence publish, PREPARE (retried on UNAVAILABLE or DEADLINE_EXCEEDED with
 * backoff until the prepare deadline), decision write fenced with the holder string of the lease
 * the round began under, manifest write (retried while the leader believes it leads) or DECIDE
 * (3 attempts per worker, then the coordinator's re-send queue), and its outcome comes back as the
 * next event. The round-level deadline is the prepare timeout plus one second. Every timing and
 * backoff is the real one (services/coordinator/timing.ts).
 *
 * Four broken variants (options.ts) act here, around the machine, to prove the checker notices:
 * commit-on-timeout, manifest-before-decision, unfenced-decisions and abort-when-in-doubt.
 */
import type { CommitRecord } from '../../services/core/state/decision-log.js';
import { assembleManifest, CheckpointRound, commitRecordOf, type Outcome, type RoundEffect, type RoundEvent, type RoundPlan } from '../../services/coordinator/checkpoint-round.js';
import { MANIFEST_RETRY_FIRST_MS, nextManifestRetryMs, nextPrepareRetryMs, PREPARE_RETRY_FIRST_MS, prepareRetryFits, ROUND_DEADLINE_EXTRA_MS } from '../../services/coordinator/timing.js';
import type { CheckpointManifest } from '../../services/gen/tidemark/v1/store.js';
import { Decision, Vote, type DecideRequest, type PrepareReply, type PrepareRequest, type QueueRef } from '../../services/gen/tidemark/v1/worker.js';
import { decideRequest } from '../../services/coordinator/outside-cut.js';
import { isRetryable, type Result } from './worker-node.js';
import type { CoordinatorNode } from './coordinator-node.js';
import type { Task } from './scheduler.js';
import type { World } from './world.js';

export type RoundEnd = Outcome | 'in-doubt';

export class RoundDriver {
  private readonly round: CheckpointRound;
  private finished = false;
  private fencedAtMs = 0;
  /** The YES votes so far, for the broken variants that act without the machine. */
  private readonly votes = new Map<string, PrepareReply>();
  /** A broken variant took the round away from the machine. */
  private bypassed = false;
  private deadline: Task | undefined;
  /** The manifest this round wrote (for the leader's RoundHistory), once it landed. */
  written: CheckpointManifest | undefined;

  constructor(
    private readonly world: World,
    private readonly leader: CoordinatorNode,
    /** The lease holder string when the round began: its Redis writes are fenced with it. */
    private readonly holder: string,
    /** Ghost: the lease acquisition the round began under (for the checker). */
    private readonly acquisition: number,
    readonly plan: RoundPlan,
    /** `failed`: an effect could not be carried out, so what Redis holds is not known here. */
    private readonly onEnd: (end: RoundEnd, reason: string, failed: boolean) => void,
    /** Whether this round writes a full manifest (RoundHistory.consolidates, as round-runner is told). */
    private readonly consolidate = false,
  ) {
    this.round = new CheckpointRound(plan);
  }

  start(): void {
    this.deadline = this.world.net.timer(this.leader, this.world.options.prepareTimeoutMs + ROUND_DEADLINE_EXTRA_MS, `${this.leader.id} round ${this.plan.epoch} deadline`, () => {
      this.dispatch({ type: 'deadline' });
    });
    this.dispatch({ type: 'start' });
  }

  private dispatch(event: RoundEvent): void {
    if (this.finished || this.bypassed) return;
    const { world } = this;
    if (world.net.faulty && event.type !== 'start' && world.random.chance(world.options.faults.crashInRound)) {
      return world.crash(this.leader);
    }
    for (const effect of this.round.handle(event)) this.execute(effect);
  }

  /** An effect that cannot complete ends the round here, undecided or in doubt (round-runner). */
  private fail(effect: RoundEffect, error: string): void {
    if (this.world.options.variant === 'abort-when-in-doubt' && effect.type === 'record-decision' && effect.decision === 'committed') {
      // Broken: the COMMIT write's reply was lost, and the leader tells everyone ABORT.
      for (const p of this.plan.participants) this.leader.sendDecision(p.workerId, this.decide('aborted'));
    }
    this.done(this.round.decision === 'committed' ? 'in-doubt' : 'aborted', `${effect.type} failed: ${error}`, true);
  }

  private done(end: RoundEnd, reason: string, failed = false): void {
    if (this.finished) return;
    this.finished = true;
    if (this.deadline) this.deadline.cancelled = true;
    this.onEnd(end, reason, failed);
  }

  private execute(effect: RoundEffect): void {
    const { world, leader } = this;
    switch (effect.type) {
      case 'publish-fences':
        return this.publishFences(effect.vhosts);
      case 'prepare': {
        const request = { leaderToken: this.plan.leaderToken, epoch: effect.epoch, roundId: this.plan.roundId, queues: effect.participant.queues };
        return this.prepare(effect.participant.workerId, request, world.scheduler.now + world.options.prepareTimeoutMs, PREPARE_RETRY_FIRST_MS);
      }
      case 'record-decision':
        if (world.options.variant === 'manifest-before-decision' && effect.decision === 'committed') {
          return this.writeManifest(this.manifestFromVotes(effect.commit!, world.scheduler.now), () => this.recordDecision(effect));
        }
        return this.recordDecision(effect);
      case 'write-manifest': {
        // round-runner: consolidated (Catalog.consolidate) when due; it reads the chain first,
        // and a chain link that is gone fails the write, leaving the round in doubt.
        const manifest = this.consolidate ? leader.consolidated(effect.manifest) : effect.manifest;
        if (!manifest) return this.fail(effect, 'a base checkpoint of the chain is gone');
        return this.writeManifest(manifest, () => {
          this.written = manifest;
          this.dispatch({ type: 'manifest-written' });
        });
      }
      case 'send-decision':
        if (effect.counted) world.stats.partial += 1;
        for (const workerId of effect.workerIds) leader.sendDecision(workerId, this.decide(effect.decision, effect.counted && (effect.counted.get(workerId) ?? [])));
        return;
      case 'finish':
        return this.done(effect.outcome, effect.reason);
    }
  }

  /**
   * round-runner prepareWithRetries: each attempt gets what is left of the deadline; a transient
   * failure is tried again after a backoff (100 ms doubling, at most 2 s) while time is left.
   */
  private prepare(workerId: string, request: PrepareRequest, deadlineAt: number, delay: number): void {
    const { world, leader } = this;
    const worker = world.workers.get(workerId)!;
    const left = Math.max(1, deadlineAt - world.scheduler.now);
    leader.rpc(worker, `PREPARE ${request.epoch}`, left, (respond) => worker.onPrepare(request, world.scheduler.now + left, respond), (result: Result<PrepareReply>) => {
      if (this.finished || this.bypassed) return;
      if (!result.ok && isRetryable(result.error) && prepareRetryFits(world.scheduler.now, delay, deadlineAt)) {
        world.net.timer(leader, delay, `${leader.id} PREPARE ${request.epoch} to ${workerId} retry`, () => this.prepare(workerId, request, deadlineAt, nextPrepareRetryMs(delay)));
        return;
      }
      if (!result.ok && world.options.variant === 'commit-on-timeout' && this.round.state === 'preparing') return this.commitOnTimeout();
      if (!result.ok) return this.dispatch({ type: 'prepare-failed', workerId, reason: result.error });
      if (result.value.vote === Vote.VOTE_YES) this.votes.set(workerId, result.value);
      this.dispatch({ type: 'vote', workerId, reply: result.value });
    });
  }

  /** round-runner sendDecision: COMMIT lists what it counted of the worker's vote (decideRequest). */
  private decide(outcome: Outcome, counted?: QueueRef[]): DecideRequest {
    return decideRequest(this.plan, outcome === 'committed', counted);
  }

  /** One fence per vhost; the round hears of a failure as soon as one publish fails. */
  private publishFences(vhosts: string[]): void {
    const { world, leader, plan } = this;
    let left = vhosts.length;
    let failed = false;
    for (const vhost of vhosts) {
      world.net.call(leader, `fence ${plan.epoch} ${vhost}`, world.options.faults.fenceError, 0, () => world.broker.publishFence(vhost, plan.epoch, plan.roundId), (result) => {
        if (failed) return;
        if (!result.ok) {
          failed = true;
          return this.dispatch({ type: 'fences-failed', reason: result.error });
        }
        left -= 1;
        if (left === 0) {
          this.fencedAtMs = world.scheduler.now;
          this.dispatch({ type: 'fences-published', atMs: world.scheduler.now });
        }
      });
    }
  }

  private recordDecision(effect: Extract<RoundEffect, { type: 'record-decision' }>): void {
    const { world, leader, plan } = this;
    // The manifest's commit time is the recorded one, so a new leader rebuilds it exactly.
    const atMs = world.scheduler.now;
    const record = { epoch: effect.epoch, roundId: plan.roundId, state: effect.decision, reason: effect.reason, leaderToken: plan.leaderToken, atMs, commit: effect.commit, ghostAcquisition: this.acquisition };
    const fenced = world.options.variant !== 'unfenced-decisions';
    world.net.call(leader, `record ${effect.decision} ${effect.epoch}`, world.options.faults.redisError, world.options.faults.redisReplyLoss, () => world.redis.record(this.holder, record, world.scheduler.now, fenced), (result) => {
      if (!result.ok) return this.fail(effect, result.error);
      if (result.value === -1) return this.fail(effect, 'not the lease holder');
      if (result.value === -2) return this.fail(effect, 'decided otherwise');
      this.dispatch({ type: 'decision-recorded', atMs });
    });
  }

  /**
   * The decision is recorded, so the manifest must land: retried until it does or we are deposed
   * (round-runner writeUntilLanded: `stillLeader()`, then the PUT). By default the check and the
   * PUT are one atomic step: the check is made as the PUT lands. With `pauseBetweenCheckAndWrite`
   * the leader checks, may pause right after (chance `faults.pause`), and sends the PUT when it
   * wakes, unchecked, as the real code can (options.ts).
   */
  private writeManifest(manifest: CheckpointManifest, then: () => void, delay = MANIFEST_RETRY_FIRST_MS): void {
    const { world, leader } = this;
    const { net, options, scheduler } = world;
    const lost = () => this.fail({ type: 'write-manifest', manifest }, 'leadership lost');
    if (!leader.stillLeader()) return lost();
    const put = (checkAsItLands: boolean) => {
      net.call(leader, `put manifest ${manifest.epoch}`, options.faults.storeError, 0, () => {
        if (checkAsItLands && !leader.stillLeader()) return false;
        world.store.putManifest(manifest, leader.id);
        return true;
      }, (result) => {
        if (result.ok && !result.value) return lost();
        if (result.ok) return then();
        net.timer(leader, delay, `${leader.id} manifest ${manifest.epoch} retry`, () => this.writeManifest(manifest, then, nextManifestRetryMs(delay)));
      });
    };
    if (!options.pauseBetweenCheckAndWrite) return put(true);
    if (net.faulty && world.random.chance(options.faults.pause)) {
      const until = scheduler.now + world.random.int(100, 2 * options.leaseMs);
      scheduler.pause(leader.id, until);
      world.stats.pauses += 1;
      scheduler.log(`PAUSE ${leader.id} until ${until} (between its leader check and the PUT of manifest ${manifest.epoch})`);
    }
    net.timer(leader, 0, `${leader.id} send manifest ${manifest.epoch}`, () => put(false));
  }

  /** Broken: when a PREPARE fails or times out, record COMMIT and write a manifest of the votes so far. */
  private commitOnTimeout(): void {
    const { world, leader, plan } = this;
    this.bypassed = true;
    const commit = this.commitRecord();
    const record = { epoch: plan.epoch, roundId: plan.roundId, state: 'committed' as const, reason: 'broken: commit on timeout', leaderToken: plan.leaderToken, atMs: world.scheduler.now, commit, ghostAcquisition: this.acquisition };
    world.net.call(leader, `record committed ${plan.epoch} (broken)`, 0, 0, () => world.redis.record(this.holder, record, world.scheduler.now), (result) => {
      if (!result.ok || result.value !== 1) return this.done('aborted', 'broken commit refused');
      this.writeManifest(this.manifestFromVotes(commit, record.atMs), () => {
        for (const p of plan.participants) leader.sendDecision(p.workerId, this.decide('committed'));
        this.done('committed', 'broken: commit on timeout');
      });
    });
  }

  private commitRecord(): CommitRecord {
    return commitRecordOf(this.plan, this.fencedAtMs, this.votes.values());
  }


  private manifestFromVotes(commit: CommitRecord, atMs: number): CheckpointManifest {
    const partitions = [...this.votes.values()].map((v) => ({ workerId: v.workerId, queues: v.queues }));
    return assembleManifest(this.plan.epoch, commit, atMs, partitions);
  }
}

export function decisionOf(outcome: Outcome): Decision {
  return outcome === 'committed' ? Decision.DECISION_COMMIT : Decision.DECISION_ABORT;
}

export function outcomeOf(decision: Decision): Outcome {
  return decision === Decision.DECISION_COMMIT ? 'committed' : 'aborted';
}
