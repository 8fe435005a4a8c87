/**
 * A simulated coordinator process: the I/O of services/coordinator/coordinator.ts, with
 * leadership.ts, scheduler.ts, decision-redelivery.ts and leader-lease.ts, over simulated time,
 * network, Redis and store. What it decides is shipped code: what it holds of the lease is the
 * real LeaseHolding, its re-send queue the real UndeliveredDecisions, its recovery the real
 * RecoveryPlan, its rounds the real CheckpointRound (round-driver.ts), its Redis writes the real
 * Lua scripts (redis.ts), its timings the real ones (timing.ts):
 * - it competes for the Redis lease every leaseMs/3 and renews it on the same timer, also while it
 *   recovers; a refused renewal makes it step down. Its lease holder string names the acquisition
 *   (`<token>:<id>:<nonce>`, a fresh nonce each time), so after a Redis loss a write begun under
 *   an earlier lease of the same coordinator, even with the same token number, fails its fence.
 *   A new token is above the store's floor: the leader token of the newest manifest and of the
 *   newest staged partitions (newestStoredToken in leadership.ts);
 * - it counts as leader (Coordinator.isLeader: scheduled work, rounds, each manifest write
 *   attempt) only while it leads and the lease is `held`: until a lease time after the last
 *   acquire or renewal that succeeded was SENT. A leader paused past its lease does nothing more
 *   until a renewal succeeds, which it does not if it was deposed;
 * - on winning it runs the real recovery (recovery-runner.ts). If recovery fails it releases the
 *   lease, and stops holding it whether or not the release reached Redis;
 * - it then leads: one round at a time, each taking a fenced epoch above the newest manifest (and,
 *   when Redis lost the counter, above the newest staged epoch too), recording `started` (with
 *   the round id), and handing a plan to the real CheckpointRound through RoundDriver. A failed
 *   `started` write (maybe only its reply was lost) sets `needsRecovery`;
 * - a round that ended in doubt or with a failed effect sets `needsRecovery`: recovery runs again
 *   before the next round and on every scheduler tick (once a second) until it succeeds, so the
 *   same leader finishes a COMMIT whose write reply was lost;
 * - recovery's recent decisions (aborted, and committed with a visible manifest) are queued for
 *   every worker, like DECIDEs that could not be delivered (DECIDE_ATTEMPTS) by a round; the
 *   queue (the real UndeliveredDecisions) is re-sent on every scheduler tick until each is
 *   delivered or refused for good.
 * Its belief that it leads (`leading`, `token`) is only as fresh as its last renewal; `held`
 * bounds it by the lease time. Its timings and retries (lease tick, scheduler tick, DECIDE
 * attempts, deadline and backoff) are the real ones (services/coordinator/timing.ts).
 *
 * - every `retention.gcEveryMs` while it leads it prunes and collects garbage with the real
 *   retention and sweep (gc-runner.ts), its manifest deletions as leader work between rounds; every
 *   `retention.fullEvery` epochs (the real RoundHistory) a round writes a full manifest, made with
 *   Catalog.consolidate's pure parts from the chain in the store.
 *
 * The old behaviour of each fixed bug comes back with its KnownGaps flag (options.ts).
 */
import type { RoundPlan } from '../../services/coordinator/checkpoint-round.js';
import { queueKey } from '../../services/core/format/queue-key.js';
import { epochFloorAfterLoss } from '../../services/core/state/decision-log.js';
import type { AckedQueues } from '../../services/coordinator/assignment.js';
import type { ProtectedQueue } from '../../services/coordinator/discovery.js';
import { latestOf, priorOf, roundPlan } from '../../services/coordinator/round-planning.js';
import { DECIDE_ATTEMPTS, DECIDE_DEADLINE_MS, decideRetryDelayMs, leaseTickMs, REDELIVER_ATTEMPTS, SCHEDULER_TICK_MAX_MS } from '../../services/coordinator/timing.js';
import { LeaseHolding } from '../../services/coordinator/lease-holding.js';
import { UndeliveredDecisions } from '../../services/coordinator/undelivered-decisions.js';
import type { DecideRequest } from '../../services/gen/tidemark/v1/worker.js';
import { recoverRounds } from './recovery-runner.js';
import { resendRequests } from '../../services/coordinator/recovery-plan.js';
import { runGc } from './gc-runner.js';
import { DecisionsInFlight } from '../../services/coordinator/decisions-in-flight.js';
import type { Protection } from '../../services/coordinator/checkpoint-retention.js';
import { RoundHistory } from '../../services/coordinator/round-history.js';
import { consolidatedEntry, keptHistory } from '../../services/core/state/catalog.js';
import { orderSegments } from '../../services/core/format/segment-reader.js';
import type { CheckpointManifest, QueueCheckpoint } from '../../services/gen/tidemark/v1/store.js';
import { outcomeOf, RoundDriver } from './round-driver.js';
import { isRetryable, type Respond, type Result, type WorkerNode } from './worker-node.js';
import type { Node, World } from './world.js';

/** LeaderScheduler.tick (scheduler.ts) runs every schedulerTickMs(discoveryInterval): every second, as discovery is slower. */
const SCHEDULER_TICK_MS = SCHEDULER_TICK_MAX_MS;

export class CoordinatorNode implements Node {
  incarnation = 0;
  up = true;
  /** LeaderLease's state: the real LeaseHolding (token, holder string, how long it surely lasts). */
  private lease: LeaseHolding;
  /** Ghost: which acquisition of the lease this process believes it holds (for the checker). */
  acquisition = 0;
  /** Coordinator.leading: set once recovery is done, cleared when a renewal is refused. */
  leading = false;
  /** A round, or recovery, is running (LeaderScheduler.enqueue). */
  private busy = false;
  private nextRoundAt = 0;
  private roundTimer = 0;
  /** Coordinator.needsRecovery: a round ended in doubt or with a failed effect. */
  private needsRecovery = false;
  /** DecisionRedelivery.undelivered: the real queue of decisions to re-send. */
  private readonly undelivered = new UndeliveredDecisions();
  private redelivering = false;
  /** The real RoundHistory: when this leader's next round consolidates. */
  private history = new RoundHistory();
  /** A prune is running (gc-runner.ts); one at a time. */
  private collecting = false;
  /** The real DecisionsInFlight: COMMITs a worker may still apply, which retention keeps. */
  private inFlight = new DecisionsInFlight(DECIDE_DEADLINE_MS);

  constructor(
    readonly id: string,
    private readonly world: World,
  ) {
    this.lease = new LeaseHolding(world.options.leaseMs);
  }

  /** LeaderLease.token: the token of the lease this process believes it holds, 0 if none. */
  get token(): number {
    return this.lease.token;
  }

  /** LeaderLease.holder (KnownGaps holderWithoutNonce: acquired with a claim without the nonce). */
  get holder(): string {
    return this.lease.holder;
  }

  /**
   * LeaderLease.held: a token, and the lease cannot have run out yet (KnownGaps
   * leaderCheckIsBelief: the token alone).
   */
  get held(): boolean {
    return this.world.options.gaps.leaderCheckIsBelief ? this.lease.token > 0 : this.lease.held(this.world.scheduler.now);
  }

  /**
   * Coordinator.isLeader, what the manifest loop checks before each attempt, and the scheduled
   * work and startRound before anything (KnownGaps: it used to be the belief alone).
   */
  stillLeader(): boolean {
    return this.leading && this.held;
  }

  start(): void {
    this.startTimers();
  }

  crash(): void {
    this.up = false;
    this.lease = new LeaseHolding(this.world.options.leaseMs);
    this.acquisition = 0;
    this.leading = false;
    this.busy = false;
    this.needsRecovery = false;
    this.undelivered.clear();
    this.redelivering = false;
    this.history = new RoundHistory();
    this.collecting = false;
    this.inFlight = new DecisionsInFlight(DECIDE_DEADLINE_MS);
  }

  /** CheckpointPruner's decisionsInFlight: sends outstanding or just ended, and the re-send queue. */
  decisionProtections(): Protection[] {
    return this.inFlight.protections(this.world.scheduler.now, this.undelivered.queued());
  }

  restart(): void {
    this.incarnation += 1;
    this.up = true;
    this.startTimers();
  }

  private startTimers(): void {
    const { net, options, random } = this.world;
    const every = leaseTickMs(options.leaseMs);
    const lead = () => {
      this.leadershipTick();
      net.timer(this, every, `${this.id} lease tick`, lead);
    };
    net.timer(this, random.int(0, every), `${this.id} lease tick`, lead);
    const tick = () => {
      this.scheduledWork();
      net.timer(this, SCHEDULER_TICK_MS, `${this.id} scheduler tick`, tick);
    };
    net.timer(this, random.int(1, SCHEDULER_TICK_MS), `${this.id} scheduler tick`, tick);
    if (!options.gc) return;
    const collect = () => {
      this.collectGarbage();
      net.timer(this, options.retention.gcEveryMs, `${this.id} gc tick`, collect);
    };
    net.timer(this, random.int(1, options.retention.gcEveryMs), `${this.id} gc tick`, collect);
  }

  /** CheckpointPruner.afterCommit, on a timer: one prune at a time, while leading. */
  private collectGarbage(): void {
    if (this.collecting || !this.stillLeader()) return;
    this.collecting = true;
    const life = this.incarnation;
    runGc(this.world, this, () => {
      if (this.incarnation === life) this.collecting = false;
    });
  }

  /**
   * LeaderScheduler.enqueue for the manifest deletions: they wait for the running round or
   * recovery, and no round starts until `release`.
   */
  exclusive(work: (release: () => void) => void): void {
    if (this.busy) {
      this.world.net.timer(this, 50, `${this.id} gc waits for the round`, () => this.exclusive(work));
      return;
    }
    this.busy = true;
    const life = this.incarnation;
    work(() => {
      if (this.incarnation === life) this.roundEnded();
    });
  }

  /**
   * Catalog.consolidate with the store's chain (the real code reads it through the catalog): every
   * entry made full by the shipped consolidatedEntry/keptHistory; undefined if a link is gone.
   */
  consolidated(manifest: CheckpointManifest): CheckpointManifest | undefined {
    const queues: QueueCheckpoint[] = [];
    for (const entry of manifest.queues) {
      const links: QueueCheckpoint[] = [];
      for (let base = entry.baseEpoch; base !== 0; ) {
        const link = this.world.store.manifests.get(base)?.queues.find((q) => q.definition?.vhost === entry.definition?.vhost && q.definition?.name === entry.definition?.name);
        if (!link || links.length > 10_000) return undefined;
        links.push(link);
        base = link.baseEpoch;
      }
      const segments = orderSegments([...entry.segments, ...links.flatMap((l) => l.segments)]);
      queues.push(consolidatedEntry(entry, segments, keptHistory(entry, links, undefined)));
    }
    return { ...manifest, queues, full: true };
  }

  private leadershipTick(): void {
    const { net, redis, options, random } = this.world;
    const f = options.faults;
    if (this.token > 0) {
      const holder = this.holder;
      const sentAt = this.world.scheduler.now;
      net.call(this, 'renew lease', f.redisError, 0, () => redis.renew(holder, options.leaseMs, this.world.scheduler.now), (renewed) => {
        // A failed call keeps the token (LeaderLease.renew throws before clearing it); the lease
        // then stops being held when a lease time has passed since the last renewal was sent.
        if (!renewed.ok || this.holder !== holder) return;
        this.lease.renewed(renewed.value, sentAt);
        if (!renewed.value) {
          this.leading = false;
          this.world.scheduler.log(`${this.id} lost the lease: stepping down`);
        }
      });
      return;
    }
    net.read(this, 'lease current', f.redisError, () => redis.holder(this.world.scheduler.now), (current) => {
      if (!current.ok || current.value !== undefined) return;
      net.read(this, 'newest stored token', f.storeError, () => this.newestStoredToken(), (floor) => {
        if (!floor.ok) return;
        const nonce = random.hex(12);
        const who = options.gaps.holderWithoutNonce ? this.id : LeaseHolding.claim(this.id, nonce);
        const sentAt = this.world.scheduler.now;
        net.call(this, 'acquire lease', f.redisError, f.redisReplyLoss, () => redis.tryAcquire(who, options.leaseMs, floor.value, this.world.scheduler.now), (acquired) => {
          if (!acquired.ok || acquired.value.token === 0 || this.token > 0) return;
          this.lease.acquired(acquired.value.token, who, sentAt);
          this.acquisition = acquired.value.acquisition;
          this.world.scheduler.log(`${this.id} leader with token ${this.token} (${this.holder})`);
          this.becomeLeader();
        });
      });
    });
  }

  /**
   * newestStoredToken (leadership.ts), the floor of a new token: the leader token of the newest
   * manifest and the newest among the partitions staged for the newest staged epoch (KnownGaps:
   * the manifest's alone). Several store reads in the real code, one here.
   */
  private newestStoredToken(): number {
    const { store, options } = this.world;
    const visible = store.latest()?.leaderToken ?? 0;
    return options.gaps.floorFromManifestsOnly ? visible : Math.max(visible, store.newestStaged().leaderToken);
  }

  /** Coordinator.becomeLeader: recovery, then the leader's duties; a failure gives the lease back. */
  private becomeLeader(): void {
    const { world } = this;
    this.undelivered.clear();
    this.recover((ok) => {
      if (!ok) return this.release();
      // The latest manifest seeds discovery; failing to read it fails becoming leader too.
      world.net.read(this, 'read latest manifest', world.options.faults.storeError, () => world.store.latest(), (latest) => {
        if (!latest.ok) return this.release();
        this.leading = true;
        this.nextRoundAt = world.scheduler.now + world.options.roundIntervalMs;
        this.scheduleRound();
      });
    });
  }

  /** Coordinator.recover: the real recovery (recovery-runner.ts), then each recent decision queued for every worker. */
  private recover(done: (ok: boolean) => void): void {
    const { world } = this;
    world.stats.recoveries += 1;
    recoverRounds(world, this, (result) => {
      if (!result.ok) {
        world.scheduler.log(`${this.id} recovery failed: ${result.error}`);
        return done(false);
      }
      this.needsRecovery = false;
      const report = result.value;
      world.stats.presumedAborted += report.presumedAborted.length;
      world.stats.finished += report.finished.length;
      world.stats.unfinishable += report.unfinishable.length;
      for (const round of report.decided) {
        for (const { workerId, request } of resendRequests(round, world.workers.keys(), this.token)) this.undelivered.remember(workerId, request);
      }
      done(true);
    });
  }

  /**
   * LeaderLease.release: the token is dropped before Redis is told, so a failed release does not
   * leave this process renewing a lease it does not lead with (KnownGaps: it used to).
   */
  private release(): void {
    // KnownGaps failedReleaseKeepsLease: the token was dropped only once Redis answered.
    const holder = this.world.options.gaps.failedReleaseKeepsLease ? this.lease.holder : this.lease.release();
    this.world.scheduler.log(`${this.id} releasing the lease`);
    this.world.net.call(this, 'release lease', this.world.options.faults.redisError, 0, () => this.world.redis.release(holder, this.world.scheduler.now), (released) => {
      if (released.ok && this.holder === holder) this.lease.release();
    });
  }


  /**
   * LeaderScheduler.tick (scheduler.ts), once a second while leading: re-send undelivered decisions, and
   * run recovery if a round left something in doubt (after the running round, if any).
   */
  private scheduledWork(): void {
    if (!this.stillLeader()) return;
    this.redeliver();
    if (this.needsRecovery && !this.busy) {
      this.busy = true;
      this.recover(() => this.roundEnded());
    }
  }

  /**
   * DecisionRedelivery.resend over the real queue (UndeliveredDecisions): REDELIVER_ATTEMPTS each,
   * worker by worker; an unreachable worker waits for the next tick. (No membership here, so no
   * worker is dropped for leaving.)
   */
  private redeliver(): void {
    if (this.redelivering || this.undelivered.size === 0) return;
    this.redelivering = true;
    const life = this.incarnation;
    const workers = this.undelivered.workers();
    const nextWorker = (): void => {
      if (this.incarnation !== life) return;
      const { value: workerId, done } = workers.next();
      if (done) {
        this.redelivering = false;
        return;
      }
      const nextRound = (): void => {
        const request = this.undelivered.next(workerId);
        if (!request) return nextWorker();
        this.world.stats.resentDecisions += 1;
        this.deliver(workerId, { ...request, leaderToken: this.token }, REDELIVER_ATTEMPTS, (gone) => {
          if (!gone) return nextWorker();
          this.undelivered.settled(workerId, request.roundId);
          nextRound();
        });
      };
      nextRound();
    };
    nextWorker();
  }

  /**
   * The real coordinator polls every second for a due round; here one timer fires when the next
   * round is due (the latest timer wins), which is the same schedule in fewer steps.
   */
  private scheduleRound(delay = Math.max(0, this.nextRoundAt - this.world.scheduler.now)): void {
    const timer = ++this.roundTimer;
    this.world.net.timer(this, delay, `${this.id} round due`, () => {
      if (timer === this.roundTimer) this.roundDue();
    });
  }

  private roundDue(): void {
    if (this.busy || this.world.calm || !this.leading || this.token === 0) return;
    // Leading, but the lease may have run out (renewals failing, or paused past it): the real
    // scheduler tick starts the due round once a renewal has succeeded again.
    if (!this.stillLeader()) return this.scheduleRound(SCHEDULER_TICK_MS);
    if (this.world.scheduler.now < this.nextRoundAt) return this.scheduleRound();
    this.nextRoundAt = this.world.scheduler.now + this.world.options.roundIntervalMs;
    this.busy = true;
    this.world.stats.rounds += 1;
    // Coordinator.round: a round of ours left in doubt is settled first; if that fails, no round.
    if (this.needsRecovery) return this.recover((ok) => (ok ? this.startRound() : this.roundEnded()));
    this.startRound();
  }

  private roundEnded(): void {
    this.busy = false;
    this.scheduleRound();
  }

  /** Coordinator.round: list the store, take a fenced epoch, record `started`, run the round. */
  private startRound(): void {
    const { world } = this;
    const { net, redis, store, options, random } = world;
    const f = options.faults;
    const startedAtMs = world.scheduler.now;
    const token = this.token;
    const holder = this.holder;
    const acquisition = this.acquisition;
    // An error before the round runs: round() throws, and the next round is the next attempt.
    const end = (why: string) => {
      world.scheduler.log(`${this.id} round not started: ${why}`);
      this.roundEnded();
    };
    // Recording `started` failed: it may have landed with its reply lost, so recovery presumes it
    // aborted (KnownGaps: it used to stay `started` while this leader led).
    const startFailed = (why: string) => {
      if (!options.gaps.failedStartLeavesStarted && !options.gaps.inDoubtWaitsForLeaderChange) this.needsRecovery = true;
      end(why);
    };
    net.read(this, 'list checkpoints', f.storeError, () => store.epochs(), (listed) => {
      if (!listed.ok) return end(listed.error);
      const latest = latestOf(listed.value);
      this.nextEpoch(holder, latest, end, (epoch) => {
        const roundId = `${token}-${epoch}-${random.hex(12)}`;
        const started = { epoch, roundId, state: 'started' as const, reason: '', leaderToken: token, atMs: startedAtMs, ghostAcquisition: acquisition };
        net.call(this, `record started ${epoch}`, f.redisError, f.redisReplyLoss, () => redis.record(holder, started, world.scheduler.now), (recorded) => {
          if (!recorded.ok) return startFailed(recorded.error);
          if (recorded.value < 0) return startFailed(`recording started refused (${recorded.value})`);
          const plan = this.plan(epoch, roundId, token, startedAtMs, listed.value);
          const consolidate = this.history.consolidates(epoch, options.retention.fullEvery);
          const driver = new RoundDriver(world, this, holder, acquisition, plan, (outcome, reason, failed) => {
            if ((outcome === 'in-doubt' || failed) && !options.gaps.inDoubtWaitsForLeaderChange) this.needsRecovery = true;
            if (outcome === 'committed') this.history.committed(epoch, driver.written);
            if (outcome === 'committed') world.stats.committed += 1;
            else if (outcome === 'aborted') world.stats.aborted += 1;
            else world.stats.inDoubt += 1;
            world.scheduler.log(`${this.id} round ${epoch} ${outcome}${reason ? `: ${reason}` : ''}`);
            this.roundEnded();
          }, consolidate);
          driver.start();
        });
      });
    });
  }

  /**
   * DecisionLog.nextEpoch: a fenced epoch above the newest manifest. If Redis lost the counter
   * (or this is the first round), the script says so without taking one, and the epoch is taken
   * above the newest staged epoch too (KnownGaps: above the newest manifest only).
   */
  private nextEpoch(holder: string, newestVisible: number, fail: (why: string) => void, then: (epoch: number) => void): void {
    const { net, redis, store, options, scheduler } = this.world;
    const f = options.faults;
    const take = (floor: number, askIfMissing: boolean) => {
      net.call(this, 'next epoch', f.redisError, f.redisReplyLoss, () => redis.nextEpoch(holder, floor, scheduler.now, askIfMissing), (taken) => {
        if (!taken.ok) return fail(taken.error);
        if (taken.value === -1) return fail('not the lease holder');
        if (taken.value !== -2) return then(taken.value);
        net.read(this, 'newest staged epoch', f.storeError, () => store.newestStaged().epoch, (staged) => {
          if (!staged.ok) return fail(staged.error);
          const floor = epochFloorAfterLoss(newestVisible, staged.value);
          scheduler.log(`${this.id} epoch counter missing: floor ${floor} (newest manifest ${newestVisible}, newest staged ${staged.value})`);
          take(floor, false);
        });
      });
    };
    take(newestVisible, !options.gaps.floorFromManifestsOnly);
  }

  /**
   * The real roundPlan (round-planning.ts), from what a discovery and assignment pass would give:
   * every queue, each acknowledged by its owner; the latest manifest is the parent.
   */
  private plan(epoch: number, roundId: string, token: number, startedAtMs: number, visibleEpochs: number[]): RoundPlan {
    const { world } = this;
    const acked = new Map<string, AckedQueues>();
    for (const worker of world.workers.values()) {
      acked.set(worker.id, { address: worker.id, queues: world.queues.filter((q) => q.owner === worker.id).map((q) => ({ vhost: q.vhost, queue: q.name, census: undefined })) });
    }
    const queues = new Map<string, ProtectedQueue>(world.queues.map((q) => [queueKey(q.vhost, q.name), { definition: world.definitions.get(q.name)!, journal: q.journal, deleted: false }]));
    return roundPlan({
      namespace: 'sim',
      coordinatorId: this.id,
      leaderToken: token,
      epoch,
      roundId,
      startedAtMs,
      visibleEpochs,
      discovered: { queues, exchanges: [], renewed: new Map() },
      assigned: { acked, failures: [] },
      prior: priorOf(world.store.latest()),
      strict: world.options.strictRounds,
    });
  }

  /**
   * A unary call to a worker with a deadline; the first of reply and deadline wins. A call to a
   * worker that is down is refused (UNAVAILABLE) as soon as it gets there.
   */
  rpc<T>(worker: WorkerNode, label: string, deadlineMs: number, invoke: (respond: Respond<T>) => void, onResult: (result: Result<T>) => void): void {
    const { net } = this.world;
    const life = this.incarnation;
    let settled = false;
    const settle = (result: Result<T>) => {
      if (settled || !this.up || this.incarnation !== life) return;
      settled = true;
      deadline.cancelled = true;
      onResult(result);
    };
    const deadline = net.timer(this, deadlineMs, `${this.id} ${label} to ${worker.id} deadline`, () => settle({ ok: false, error: 'deadline exceeded' }));
    net.send(
      this,
      worker,
      label,
      () => invoke((result) => net.send(worker, this, `${label} reply`, () => settle(result))),
      () => net.timer(this, 1, `${this.id} ${label} to ${worker.id} refused`, () => settle({ ok: false, error: 'unavailable: connection refused' })),
    );
  }

  /** DECIDE of a round to its participants (round-runner sendDecision): DECIDE_ATTEMPTS, then the re-send queue. */
  sendDecision(workerId: string, request: DecideRequest): void {
    this.deliver(workerId, request, DECIDE_ATTEMPTS, (gone) => {
      if (!gone) this.undelivered.remember(workerId, request);
    });
  }

  /**
   * round-runner deliverDecision: up to `attempts` tries (DECIDE_DEADLINE_MS each, backoff
   * decideRetryDelayMs); `done(true)` when nothing is left to send (delivered, or refused for good).
   */
  private deliver(workerId: string, request: DecideRequest, attempts: number, done: (gone: boolean) => void, attempt = 1): void {
    const worker = this.world.workers.get(workerId)!;
    const outcome = outcomeOf(request.decision);
    this.world.checker.decisionSent(this.id, workerId, request.epoch, request.roundId, outcome);
    // WorkerPool's tracked client: the send is outstanding until its reply or deadline.
    this.inFlight.sending(request);
    const life = this.incarnation;
    this.rpc<void>(worker, `DECIDE ${outcome} ${request.epoch}`, DECIDE_DEADLINE_MS, (respond) => worker.onDecide(request, respond), (result) => {
      if (this.incarnation === life) this.inFlight.ended(request, this.world.scheduler.now);
      if (result.ok || !isRetryable(result.error)) return done(true);
      if (attempt >= attempts) return done(false);
      this.world.net.timer(this, decideRetryDelayMs(attempt), `${this.id} DECIDE ${request.epoch} retry`, () => this.deliver(workerId, request, attempts, done, attempt + 1));
    });
  }
}
