/**
 * The coordinator: the control plane. Holds (or waits for) the leader lease; as leader it runs
 * discovery, assigns queues to live workers, runs checkpoint rounds on a schedule and on demand,
 * and orchestrates restores. Standbys answer status and catalog calls.
 *
 * This file holds the leader's state between its duties and ties them together; each duty lives
 * in its own file: competing for the lease (leadership.ts), the timer and the one-at-a-time work
 * queue (scheduler.ts), recovery (recovery.ts), re-sending decisions (decision-redelivery.ts),
 * the worker pool and assignment (assignment.ts), a round's plan (round-planning.ts) and run
 * (round-runner.ts), coverage (coverage.ts), the status reply (coordinator-status.ts) and what
 * it remembers of rounds (round-history.ts). Its parts are opened in coordinator-parts.ts.
 * (Past ~400 lines on purpose: what is left is the one leader state every duty shares; a duty moved out would take all of it along.)
 *
 * - a leader leads only after recovery and its first discovery pass, and only while its lease is
 *   certainly held (isLeader); a discovery pass queued before it was deposed is dropped;
 * - the protected set and the assignment change only in work run through the scheduler's queue,
 *   where rounds run too, so a round sees one consistent assignment;
 * - a round that ended in doubt, or whose effects failed, is recovered before the next round.
 */
import {
  abortable,
  type Catalog,
  type GrpcTls,
  type Clock,
  type Config,
  errorMessage,
  type Logger,
  NotLeaderError,
  queueKey,
  StoppingError,
  systemClock,
  withTimeLimit,
  type WorkerClient,
} from '../core/index.js';
import { segmentPrefix } from '../core/store/index.js';
import type { StatusReply } from '../gen/tidemark/v1/admin.js';
import { assignQueues, type AssignmentResult, WorkerPool } from './assignment.js';
import { AmqpBrokerContinuity, type BrokerContinuity } from './broker-continuity.js';
import { CoordinatorMetrics } from './coordinator-metrics.js';
import { type CoordinatorParts, openCoordinatorParts } from './coordinator-parts.js';
import { statusReply, WORKER_STATUS_DEADLINE_MS, workerReport } from './coordinator-status.js';
import { COVERAGE_SETTLE_MS, CoverageTracker, observeCoverage } from './coverage.js';
import { DecisionRedelivery } from './decision-redelivery.js';
import type { DiscoveryResult } from './discovery.js';
import { FenceChannels } from './fence-channels.js';
import { CensusHistory } from './queue-census.js';
import { Leadership } from './leadership.js';
import { LeaderDirectory } from './leader-directory.js';
import { recoverRounds } from './recovery.js';
import { resendRequests } from './recovery-plan.js';
import { RoundHistory } from './round-history.js';
import { carriedSince, latestOf, newRoundId, priorEntries, rearmSentinels, roundPlan } from './round-planning.js';
import { runRound, type RoundResult } from './round-runner.js';
import { LeaderScheduler } from './scheduler.js';
import { DECIDE_DEADLINE_MS, leaseTickMs, schedulerTickMs } from './timing.js';
import { CheckpointPruner } from './checkpoint-pruner.js';
import { DecisionsInFlight } from './decisions-in-flight.js';

export type { CoordinatorParts } from './coordinator-parts.js';

/** Decided rounds kept in the Redis decision log (for operators looking back). */
const DECISIONS_KEPT = 1_000;

/**
 * How long stop() waits for each of: the restores it interrupted to record their state, the
 * leader work in flight (a round cut short by stepping down), the lease release. Redis or a
 * worker that stopped answering must not hold the stop; what is cut is safe by the protocol (an
 * undecided round is presumed aborted, a committed one finished by the next leader).
 */
const STOP_STEP_LIMIT_MS = 3_000;

export class Coordinator {
  readonly id: string;
  /**
   * The last discovery pass that succeeded (discovery.ts): the protected queues, their exchanges,
   * the queues the resource guard held back, renewed journals, and uncapturable entry paths.
   */
  private discovered: Pick<DiscoveryResult, 'queues' | 'exchanges' | 'waiting' | 'renewed' | 'uncapturable'> = {
    queues: new Map(),
    exchanges: [],
    waiting: [],
    renewed: new Map(),
    uncapturable: new Map(),
  };
  /** What each worker acknowledged in the last assignment pass, and why others did not (a round's abort names it). */
  private assigned: Pick<AssignmentResult, 'acked' | 'failures'> = { acked: new Map(), failures: [] };
  /** COMMITs workers may still apply: retention keeps their checkpoints (decisions-in-flight.ts). */
  private readonly inFlight = new DecisionsInFlight(DECIDE_DEADLINE_MS);
  private readonly pool: WorkerPool;
  private readonly history = new RoundHistory();
  private timers: NodeJS.Timeout[] = [];
  private stopped = false;
  /** Aborts when stop() begins: the round in flight, if undecided, aborts at once. */
  private readonly stopping = new AbortController();
  private leading = false;
  /** Set when a round ended in doubt: recovery runs again before the next round. */
  private needsRecovery = false;
  private readonly redelivery = new DecisionRedelivery();
  /** The leader's fence channels, kept open across rounds; closed when it stops leading. */
  private readonly fences: FenceChannels;
  /** Each queue's counters at the last census, to see requeues and basic.gets since. */
  private readonly censusHistory = new CensusHistory();
  private readonly continuity: BrokerContinuity;
  private readonly leadership: Leadership;
  private readonly scheduler: LeaderScheduler;
  private readonly coverage: CoverageTracker;
  private readonly leaderListeners: Array<() => void> = [];
  private readonly stopListeners: Array<() => Promise<void>> = [];
  readonly metrics: CoordinatorMetrics;
  /** What the leader's decisions read the time from (CoordinatorParts.clock). */
  readonly clock: Clock;
  /** Retention and garbage collection (checkpoint-pruner.ts). */
  readonly pruner: CheckpointPruner;
  /** Where clients reach the leader (leader-directory.ts): what a standby tells callers. */
  readonly leaders: LeaderDirectory;

  constructor(private readonly parts: CoordinatorParts) {
    this.id = parts.config.id;
    this.pool = new WorkerPool(this.inFlight, parts.tls);
    this.clock = parts.clock ?? systemClock;
    this.coverage = new CoverageTracker(COVERAGE_SETTLE_MS, this.clock);
    this.fences = new FenceChannels((vhost) => parts.connections.connect(vhost), parts.log.child('fences'));
    this.continuity = new AmqpBrokerContinuity(parts.config.namespace, (vhost) => parts.connections.connect(vhost));
    this.leaders = new LeaderDirectory(parts.redis, parts.lease, parts.config.namespace, parts.log);
    this.leadership = new Leadership({
      lease: parts.lease,
      catalog: parts.catalog,
      leaseTime: parts.config.leaseTime,
      log: parts.log,
      stopped: () => this.stopped,
      becomeLeader: () => this.becomeLeader(),
      stepDown: () => this.stepDown(),
    });
    this.scheduler = new LeaderScheduler(parts.config, {
      stopped: () => this.stopped,
      isLeader: () => this.isLeader,
      leaseLapsed: () => this.leading && !parts.lease.held && parts.lease.token > 0,
      needsRecovery: () => this.needsRecovery,
      redeliver: () => this.redelivery.resend(this.pool.clients, () => parts.lease.token, parts.log),
      recover: () => this.recover(),
      discoverAndAssign: () => this.discoverAndAssign(),
      startRound: () => this.startRound(),
    }, parts.log, this.clock);
    this.pruner = new CheckpointPruner({
      ...parts,
      clock: this.clock,
      isLeader: () => this.isLeader,
      exclusive: (work) => this.scheduler.enqueue(work, undefined, 'deleting checkpoints'),
      decisionsInFlight: () => this.inFlight.protections(Date.now(), this.redelivery.undelivered.queued()),
      // Before the first discovery pass the protected set is unknown: no absent queue is swept.
      protectedQueues: () =>
        this.discovered.queues.size === 0 ? undefined : new Set([...this.discovered.queues.values()].map((q) => segmentPrefix(q.definition.vhost, q.definition.name))),
    });
    this.metrics = new CoordinatorMetrics({
      leader: () => this.isLeader,
      protectedQueues: () => this.discovered.queues.size,
      workers: async () => (await parts.membership.live()).length,
      lastCommit: () => this.history.lastCommit,
      intervalMs: () => parts.config.interval,
      coverageGaps: () => this.coverage.gaps(),
      coverageUnchecked: () => this.coverageUnchecked(),
      incompleteQueues: () => this.history.lastCommit?.incompleteQueues ?? 0,
      outsideCut: () => this.history.lastCommit?.outside ?? [],
      unprotectedQueues: () => this.discovered.waiting.length,
      journalBoundBytes: () => parts.retention?.boundBytes ?? 0,
      journalPressure: () => (parts.retention?.pressure ?? '') !== '',
    });
  }

  /**
   * Opens the store and Redis (coordinator-parts.ts). `signal` gives up a connect that does not
   * answer (the service is being stopped while it starts); whatever was opened is closed again
   * when create() fails.
   */
  static async create(config: Config, log: Logger, signal?: AbortSignal): Promise<Coordinator> {
    return new Coordinator(await openCoordinatorParts(config, log, signal));
  }

  /** Leading, and the lease is certainly still ours (renewed less than a lease time ago). */
  get isLeader(): boolean {
    return this.leading && this.parts.lease.held;
  }

  /** The certificate material of the admin API and of calls to workers (plaintext when off). */
  get tls(): GrpcTls {
    return this.parts.tls ?? { enabled: false };
  }

  get catalog(): Catalog {
    return this.parts.catalog;
  }

  /**
   * Starts competing for leadership; the leader's duties start when the lease is won. `signal`
   * stops waiting for the first attempt (which may recover rounds and run a discovery pass):
   * the caller then calls stop(), which the attempt in flight notices.
   */
  async start(signal?: AbortSignal): Promise<void> {
    const { config } = this.parts;
    // The renewal timer runs before the first tick: becoming leader (recovery, the first discovery
    // pass) may take longer than the lease, which must not expire meanwhile.
    this.timers.push(setInterval(() => void this.leadership.tick(), leaseTickMs(config.leaseTime)));
    await abortable(this.leadership.tick(), signal);
    // Standbys learn where the leader is as soon as it changes (within a lease tick).
    this.timers.push(setInterval(() => void this.leaders.refresh(), leaseTickMs(config.leaseTime)));
    await abortable(this.leaders.refresh(), signal);
    this.timers.push(setInterval(() => void this.scheduler.tick(), schedulerTickMs(config.discoveryInterval)));
  }

  /** Recovery before the first round (see recovery.ts), then the leader's duties. */
  private async becomeLeader(): Promise<void> {
    const { catalog, discovery, lease } = this.parts;
    const token = lease.token;
    this.redelivery.undelivered.clear();
    await this.recover();
    const latest = await catalog.latestEpoch();
    this.history.lastCommit = undefined;
    if (latest > 0) {
      const manifest = await catalog.get(latest);
      discovery.remember(
        manifest.queues.map((q) => ({ definition: q.definition!, journal: q.journal, deleted: true })),
        manifest.startedAtMs,
        await carriedSince(catalog, manifest),
      );
      this.history.knownCommit(latest, manifest);
    }
    // Given up on (time limit) and the lease released meanwhile, or stopping: this attempt must not lead.
    if (lease.token !== token || this.stopped) return;
    this.leading = true;
    this.scheduler.startRoundClock();
    await this.scheduler.enqueue(() => this.discoverAndAssign());
    for (const listener of this.leaderListeners) listener();
  }

  /**
   * Recovery (recovery.ts): presumed abort, finishing committed epochs, and queueing the recent
   * decisions for every live worker, which may have missed them while the leader changed.
   */
  private async recover(): Promise<void> {
    const { decisions, catalog, lease, store, membership, log } = this.parts;
    const report = await recoverRounds({ decisions, catalog, store, holder: lease.holder, leaderToken: lease.token, log, clock: this.clock });
    this.needsRecovery = false;
    // A round that ended in doubt may just have become visible (metrics only: never fails recovery).
    const finished = Math.max(0, ...report.finished);
    if (finished > (this.history.lastCommit?.epoch ?? 0)) {
      const manifest = await catalog.get(finished).catch(() => undefined);
      if (manifest) this.history.knownCommit(finished, manifest);
    }
    const workers = await membership.live();
    this.pool.refresh(workers);
    for (const round of report.decided) {
      for (const { workerId, request } of resendRequests(round, workers.map((w) => w.id), lease.token)) this.redelivery.undelivered.remember(workerId, request);
    }
  }

  /** Stops leading until the lease is won again; the fence channels are a leader's. */
  private stepDown(): void {
    this.leading = false;
    void this.fences.close();
  }

  /** One discovery pass, then the assignment of every protected queue to a live worker. */
  private async discoverAndAssign(): Promise<void> {
    // Work queued before this coordinator was deposed is dropped.
    if (!this.isLeader) return;
    const { discovery, log } = this.parts;
    try {
      this.discovered = await discovery.pass();
    } catch (err) {
      log.warn('discovery failed; keeping the previous protected set', { err: errorMessage(err) });
    }
    await this.assignQueues();
    // Compares each protected queue's publishes with what its journal received (coverage.ts).
    await observeCoverage(this.coverage, this.parts.management, this.discovered.queues.values(), this.pool.clients.values(), WORKER_STATUS_DEADLINE_MS, this.discovered.uncapturable, log).catch((err) =>
      log.warn('coverage check failed; will retry', { err: errorMessage(err) }),
    );
  }

  /** Protected queues whose coverage is not known yet (all of them before the first pass). */
  private coverageUnchecked(): number {
    return this.coverage.unchecked() ?? this.discovered.queues.size;
  }

  /** Assigns every protected queue to a live worker (assignment.ts); an outranked leader steps down instead. */
  private async assignQueues(): Promise<void> {
    const { membership, catalog, lease, log } = this.parts;
    const workers = await membership.live();
    this.pool.refresh(workers);
    const result = await assignQueues({
      workers,
      pool: this.pool,
      protectedQueues: this.discovered.queues,
      renewed: this.discovered.renewed,
      catalog,
      leaderToken: () => lease.token,
      timeoutMs: this.parts.config.prepareTimeout,
      log,
    });
    const { outranked } = result;
    if (outranked > 0) {
      // A worker has seen a higher token than ours although Redis names us leader: Redis lost its
      // counter and the store could not show the token a later leader used. Without a higher
      // token no worker will ever listen: give the lease up and take it again above that token.
      log.warn('a worker has seen a leader token above this leader\'s: taking a new lease above it', { leaderToken: lease.token, seenToken: outranked });
      this.leadership.raiseFloor(outranked);
      this.stepDown();
      await lease.release().catch(() => {});
      return;
    }
    this.assigned = result;
  }

  /** Runs a round after any discovery pass in progress; `onEpoch` hears the epoch once taken. */
  startRound(onEpoch?: (epoch: number) => void): Promise<RoundResult> {
    if (!this.isLeader) return Promise.reject(this.notLeader('did not start a checkpoint round'));
    return this.scheduler.enqueue(() => this.round(onEpoch));
  }

  private async round(onEpoch?: (epoch: number) => void): Promise<RoundResult> {
    const { config, catalog, decisions, lease, log } = this.parts;
    // A round of ours that ended in doubt is finished (or presumed aborted) before the next one.
    if (this.needsRecovery) await this.recover();
    const startedAtMs = this.clock.now();
    // One listing gives both the parent and the set a worker's base must belong to.
    const visibleEpochs = await catalog.epochs();
    const latest = latestOf(visibleEpochs);
    const epoch = await decisions.nextEpoch(lease.holder, lease.token, latest, async () => (await catalog.newestStaged()).epoch);
    const roundId = newRoundId(lease.token, epoch);
    try {
      await decisions.record(lease.holder, { epoch, roundId, state: 'started', reason: '', leaderToken: lease.token, atMs: startedAtMs });
    } catch (err) {
      // The write may have landed with its reply lost: recovery presumes it aborted.
      this.needsRecovery = true;
      throw err;
    }
    onEpoch?.(epoch);
    const prior = await priorEntries(catalog, latest);
    this.censusHistory.retain(new Set(this.discovered.queues.keys()));
    const result = await runRound({
      namespace: config.namespace,
      plan: roundPlan({
        namespace: config.namespace,
        coordinatorId: this.id,
        leaderToken: lease.token,
        epoch,
        roundId,
        startedAtMs,
        visibleEpochs,
        discovered: this.discovered,
        assigned: this.assigned,
        prior,
        strict: config.strictRounds,
      }),
      holder: lease.holder,
      decisions,
      catalog,
      workers: this.pool.clients,
      fences: this.fences,
      continuity: this.continuity,
      prepareTimeoutMs: config.prepareTimeout,
      consolidate: this.history.consolidates(epoch, config.fullEvery),
      historyFrom: this.history.consolidates(epoch, config.fullEvery) ? await this.pruner.historyFrom(visibleEpochs) : undefined,
      stillLeader: () => this.isLeader,
      undelivered: (workerId, request) => this.redelivery.undelivered.remember(workerId, request),
      log,
      clock: this.clock,
      signal: this.stopping.signal,
      census: {
        management: {
          consumersByQueue: (vhost) => this.parts.management.consumersByQueue(vhost),
          censusCounters: (vhost) => this.parts.management.censusCounters(vhost),
        },
        history: this.censusHistory,
        settings: { maxHoldMs: config.headMaxHold },
      },
    });
    if (result.outcome === 'in-doubt' || result.effectFailed) this.needsRecovery = true;
    // The decision log only needs recent epochs; keep Redis from growing with every round.
    await decisions.forgetDecidedThrough(epoch - DECISIONS_KEPT).catch((err) => log.warn('trimming the decision log failed', { epoch, err: errorMessage(err) }));
    if (result.outcome === 'committed') {
      this.history.committed(epoch, result.manifest);
      this.pruner.afterCommit();
      if (result.manifest) {
        await rearmSentinels(this.continuity, result.manifest, log, result.outside);
        const inside = result.manifest.queues.filter((q) => !q.outsideCut).map((q) => queueKey(q.definition!.vhost, q.definition!.name));
        this.parts.discovery.committed(new Set(inside), result.manifest.startedAtMs, await carriedSince(catalog, result.manifest));
      }
    } else if (result.outcome === 'aborted') {
      this.history.aborted();
    }
    const durationMs = this.clock.now() - startedAtMs;
    this.metrics.roundFinished(result.outcome, durationMs);
    this.history.last = { epoch, outcome: result.outcome, reason: result.reason, startedAtMs, durationMs };
    return result;
  }

  /**
   * The error a standby answers a leader-only call with: it names the leader and carries the
   * leader's address, when known, for the client to send the call there.
   */
  notLeader(what: string): NotLeaderError {
    const leader = this.leaders.leader;
    const address = leader?.address && leader.id !== this.id ? leader.address : undefined;
    let where = 'no coordinator leads right now (retry in a few seconds)';
    if (leader?.id === this.id) where = 'it holds the lease but is still taking over (recovery); retry in a few seconds';
    else if (leader) where = address ? `the leader is ${leader.id} at ${address}` : `the leader is ${leader.id}, which has not published its address yet`;
    return new NotLeaderError(`coordinator ${this.id} is a standby, so it ${what}; ${where}. Send the request to the leader (see "tidemark status")`, address);
  }

  async status(): Promise<StatusReply> {
    const { config, store, lease, membership, catalog, management, guard, retention } = this.parts;
    return statusReply({
      coordinatorId: this.id,
      config,
      storeUrl: store.url,
      lease,
      leaders: this.leaders,
      membership,
      catalog,
      management,
      guard,
      retention,
      clients: this.pool.clients,
      workerTls: this.parts.tls,
      coverage: this.coverage,
      isLeader: () => this.isLeader,
      acked: () => this.assigned.acked,
      protectedQueues: () => this.discovered.queues.size,
      history: this.history,
      coverageUnchecked: () => this.coverageUnchecked(),
      waiting: () => this.discovered.waiting,
    });
  }

  /** Each live worker's own report on its captures (the status page's per-queue view); asking does not change the pool. */
  async captureReports(): Promise<Array<Awaited<ReturnType<typeof workerReport>>>> {
    const workers = await this.parts.membership.live();
    return Promise.all(workers.map((w) => workerReport(this.pool.clients, w, this.parts.tls)));
  }

  /** Calls `listener` when stop() begins, while Redis and the store are still open; stop() waits for it a while. */
  whenStopping(listener: () => Promise<void>): void {
    this.stopListeners.push(listener);
  }

  /** Calls `listener` each time this coordinator has become leader (after recovery and the first discovery pass). */
  whenLeader(listener: () => void): void {
    this.leaderListeners.push(listener);
  }

  /** What restores, verification and drills use besides the catalog. */
  get restoreParts(): Pick<CoordinatorParts, 'config' | 'store' | 'redis' | 'management' | 'log'> {
    const { config, store, redis, management, log } = this.parts;
    return { config, store, redis, management, log };
  }

  /** Live workers and their clients, for restores. */
  async liveWorkers(): Promise<Map<string, WorkerClient>> {
    this.pool.refresh(await this.parts.membership.live());
    return this.pool.clients;
  }

  get leaderToken(): number {
    return this.parts.lease.token;
  }

  /**
   * Stops: steps down first (a round in flight stops at its next step as if deposed, and the
   * restores this leader runs are interrupted, to be resumed by the next leader), then gives the
   * lease back and closes every connection. Each wait is bounded (STOP_STEP_LIMIT_MS).
   */
  async stop(): Promise<void> {
    const { log } = this.parts;
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    this.stepDown();
    this.stopping.abort(new StoppingError(`coordinator ${this.id} is stopping`));
    const bounded = (work: Promise<unknown>, what: string) => withTimeLimit(work, STOP_STEP_LIMIT_MS, what).catch((err) => log.warn('a stop step did not finish', { step: what, err: errorMessage(err) }));
    await bounded(Promise.allSettled(this.stopListeners.map((listener) => listener())), 'interrupting the restores in flight');
    await bounded(this.scheduler.idle(), 'the leader work in flight (cut short: the next leader settles it)');
    await bounded(this.parts.lease.release(), 'giving the leader lease back (it runs out by itself)');
    this.pool.close();
    await this.fences.close();
    await this.parts.connections.close();
    this.parts.redis.disconnect();
    await this.parts.store.close();
  }
}
