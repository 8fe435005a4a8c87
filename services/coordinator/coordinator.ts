/**
 * The coordinator: the control plane. Holds (or waits for) the leader lease; as leader it runs
 * discovery, assigns queues to live workers by rendezvous hashing, runs checkpoint rounds on a
 * schedule and on demand, and orchestrates restores. Standbys answer status and catalog calls.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import {
  abortable,
  assign,
  Catalog,
  type Config,
  DecisionLog,
  errorMessage,
  FailedPreconditionError,
  fenceExchangeName,
  firehoseQueueName,
  firehoseVhostsOf,
  type Logger,
  Membership,
  ProtectionPolicy,
  relayUnknown,
  relayView,
  type RelayView,
  StaleLeaderError,
  StoppingError,
  throttledWarn,
  withTimeLimit,
  WorkerClient,
  type WorkerRegistration,
} from '../core/index.js';
import { ManagementClient, VhostConnections } from '../core/amqp/index.js';
import { openRedis } from '../core/redis/index.js';
import { type ObjectStore, openStoreRetrying } from '../core/store/index.js';
import { CoverageTracker, gapPaths, sampleCoverage } from './coverage.js';
import { CoordinatorMetrics } from './coordinator-metrics.js';
import { FenceChannels } from './fence-channels.js';
import { AmqpBrokerContinuity, incompleteQueues, type BrokerContinuity } from './broker-continuity.js';
import type { BrokerNode, StatusReply } from '../gen/tidemark/v1/admin.js';
import type { CheckpointManifest, ExchangeDefinition } from '../gen/tidemark/v1/store.js';
import type { QueueAssignment, QueueRef } from '../gen/tidemark/v1/worker.js';
import { queueKey, type PriorEntry, type RoundParticipant } from './checkpoint-round.js';
import { Discovery, type ProtectedQueue } from './discovery.js';
import { JournalRetention } from './journal-retention.js';
import { ShedJournals } from './shed-journals.js';
import { ResourceGuard, type WaitingQueue } from './resource-guard.js';
import { LeaderLease } from './leader-lease.js';
import { deliverDecision, runRound, type RoundResult } from './round-runner.js';
import { roundOutcome } from './admin-enums.js';
import { recoverRounds } from './recovery.js';
import { leaseTickMs, REDELIVER_ATTEMPTS, schedulerTickMs } from './timing.js';
import { UndeliveredDecisions } from './undelivered-decisions.js';
import { Decision } from '../gen/tidemark/v1/worker.js';

/** Decided rounds kept in the Redis decision log (for operators looking back). */
const DECISIONS_KEPT = 1_000;

/** Queues held back by the resource guard that status lists by name (it counts them all). */
const UNPROTECTED_LISTED = 100;

/** How long status waits for each worker's own report. */
const WORKER_STATUS_DEADLINE_MS = 2_000;
/**
 * The longest one step of the leader's background work (recovery, a discovery pass, becoming
 * leader) may take before it is given up and retried: a hung call must not stop the leader for good.
 */
const STEP_LIMIT_MS = 120_000;
/**
 * How long stop() waits for each of: the restores it interrupted to record their state, the
 * leader work in flight (a round cut short by stepping down), the lease release. Redis or a
 * worker that stopped answering must not hold the stop; what is cut is safe by the protocol (an
 * undecided round is presumed aborted, a committed one finished by the next leader).
 */
const STOP_STEP_LIMIT_MS = 3_000;

export interface CoordinatorParts {
  config: Config;
  log: Logger;
  store: ObjectStore;
  catalog: Catalog;
  redis: Redis;
  lease: LeaderLease;
  decisions: DecisionLog;
  membership: Membership;
  connections: VhostConnections;
  management: ManagementClient;
  discovery: Discovery;
  /** The broker resource guard discovery admits new journals through; absent in some tests. */
  guard?: ResourceGuard;
  /** The journal retention discovery applies; absent in some tests. */
  retention?: JournalRetention;
}

export class Coordinator {
  readonly id: string;
  private protectedQueues = new Map<string, ProtectedQueue>();
  private exchanges: ExchangeDefinition[] = [];
  /** Selected queues the resource guard gave no journal in the last discovery pass. */
  private waiting: WaitingQueue[] = [];
  /** Queues whose journal was renewed since their latest checkpoint (discovery.ts), with why. */
  private renewed = new Map<string, string>();
  /** Entry paths into protected queues that journals cannot see, from the last discovery pass. */
  private uncapturable = new Map<string, string[]>();
  /** Queues each worker acknowledged in the last pass, with the address it was reached at. */
  private assignment = new Map<string, { address: string; queues: QueueRef[] }>();
  private readonly clients = new Map<string, WorkerClient>();
  private generation = 0;
  private lastFullEpoch = 0;
  private counters = { committed: 0, aborted: 0 };
  /** The last round this leader ran, in its own terms (status() maps it for the admin API). */
  private lastRound: { epoch: number; outcome: RoundResult['outcome']; reason: string; startedAtMs: number; durationMs: number } | undefined;
  /** Discovery passes and rounds run one at a time, so a round sees one consistent assignment. */
  private serial: Promise<unknown> = Promise.resolve();
  private timers: NodeJS.Timeout[] = [];
  private nextRoundAt = 0;
  private stopped = false;
  /** Aborts when stop() begins: the round in flight, if undecided, aborts at once. */
  private readonly stopping = new AbortController();
  private leading = false;
  /** Set when a round ended in doubt: recovery runs again before the next round. */
  private needsRecovery = false;
  /** Decisions workers have not acknowledged yet (undelivered-decisions.ts); re-sent each tick. */
  private readonly undelivered = new UndeliveredDecisions();
  private redelivering = false;
  /** The leader's fence channels, kept open across rounds; closed when it stops leading. */
  private readonly fences: FenceChannels;
  private readonly continuity: BrokerContinuity;
  /** Why workers did not take their queues in the last assignment pass: a round's abort names it. */
  private assignmentFailures: string[] = [];
  /** The newest committed checkpoint this leader knows of, for metrics. */
  private lastCommit: { epoch: number; committedAtMs: number; incompleteQueues?: number } | undefined;
  readonly metrics: CoordinatorMetrics;

  constructor(private readonly parts: CoordinatorParts) {
    this.id = parts.config.id;
    this.stallWarn = throttledWarn(parts.log, 30_000);
    this.fences = new FenceChannels((vhost) => parts.connections.connect(vhost), parts.log.child('fences'));
    this.continuity = new AmqpBrokerContinuity(parts.config.namespace, (vhost) => parts.connections.connect(vhost));
    this.metrics = new CoordinatorMetrics({
      leader: () => this.isLeader,
      protectedQueues: () => this.protectedQueues.size,
      workers: async () => (await parts.membership.live()).length,
      lastCommit: () => this.lastCommit,
      coverageGaps: () => this.coverage.gaps(),
      coverageUnchecked: () => this.coverageUnchecked(),
      incompleteQueues: () => this.lastCommit?.incompleteQueues ?? 0,
      unprotectedQueues: () => this.waiting.length,
      journalBoundBytes: () => parts.retention?.boundBytes ?? 0,
      journalPressure: () => (parts.retention?.pressure ?? '') !== '',
    });
  }

  /**
   * Opens the store and Redis. `signal` gives up a connect that does not answer (the service is
   * being stopped while it starts); whatever was opened is closed again when create() fails.
   */
  static async create(config: Config, log: Logger, signal?: AbortSignal): Promise<Coordinator> {
    const store = await openStoreRetrying(config, signal, (err, delayMs) => log.warn(`store not ready, retrying in ${delayMs} ms: ${errorMessage(err)}`));
    let redis: Redis;
    try {
      redis = await openRedis(config.redisUrl, log.child('redis'), signal);
    } catch (err) {
      await store.close().catch(() => {});
      throw err;
    }
    const connections = new VhostConnections(config.amqpUrl, log.child('amqp'), `tidemark coordinator ${config.id}`);
    const management = new ManagementClient(config.managementUrl);
    const guard = new ResourceGuard({
      management,
      limits: {
        fdFraction: config.guardFdFraction,
        memFraction: config.guardMemFraction,
        diskMargin: config.guardDiskMargin,
        journalFdCost: config.journalFdCost,
        maxJournals: config.maxJournals,
      },
      log: log.child('guard'),
    });
    const retention = new JournalRetention(
      { diskShare: config.journalDiskShare, minBytes: config.journalMinBytes, maxBytes: config.journalMaxBytes, diskMargin: config.guardDiskMargin },
      log.child('retention'),
    );
    return new Coordinator({
      config,
      log,
      store,
      catalog: new Catalog(store),
      redis,
      lease: new LeaderLease(redis, config.namespace, config.id, config.leaseTime),
      decisions: new DecisionLog(redis, config.namespace),
      membership: new Membership(redis, config.namespace, config.leaseTime),
      connections,
      management,
      discovery: new Discovery({
        namespace: config.namespace,
        journalMaxAge: config.journalMaxAge,
        journalMaxBytes: config.journalMaxBytes,
        management,
        connections,
        policy: new ProtectionPolicy(config.protect, config.namespace),
        firehoseVhosts: firehoseVhostsOf(config.firehoseVhosts),
        guard,
        retention,
        shedLog: new ShedJournals(redis, config.namespace),
        log: log.child('discovery'),
      }),
      guard,
      retention,
    });
  }

  /** Leading, and the lease is certainly still ours (renewed less than a lease time ago). */
  get isLeader(): boolean {
    return this.leading && this.parts.lease.held;
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
    this.timers.push(setInterval(() => void this.leadershipTick(), leaseTickMs(config.leaseTime)));
    await abortable(this.leadershipTick(), signal);
    this.timers.push(setInterval(() => void this.scheduledWork(), schedulerTickMs(config.discoveryInterval)));
  }

  private renewing = false;
  private acquiring = false;
  /** The highest token a worker told us it has seen: new leases start above it. */
  private tokenFloor = 0;

  /** One renewal or one acquisition at a time; a renewal may run while a new leader recovers. */
  private async leadershipTick(): Promise<void> {
    const { lease, log } = this.parts;
    if (this.stopped) return;
    // Held leases are renewed, also while recovery runs before the leader's first round.
    if (lease.token > 0) {
      if (this.renewing) return;
      this.renewing = true;
      try {
        if (!(await withTimeLimit(lease.renew(), Math.max(500, Math.floor(this.parts.config.leaseTime / 2)), 'leader lease renewal'))) {
          this.stepDown();
          log.warn('leader lease lost: stepping down');
        }
      } catch (err) {
        log.warn(`leader lease renewal failed: ${errorMessage(err)}; this coordinator stops leading when the lease runs out`);
      } finally {
        this.renewing = false;
      }
      return;
    }
    if (this.acquiring) return;
    this.acquiring = true;
    try {
      // Standbys poll cheaply; the store is read only when the lease is free.
      const limit = Math.max(1_000, this.parts.config.leaseTime);
      if (await withTimeLimit(lease.current(), limit, 'reading the leader lease')) return;
      const floor = Math.max(this.tokenFloor, await withTimeLimit(this.newestStoredToken(), STEP_LIMIT_MS, 'reading the newest stored leader token'));
      if (await withTimeLimit(lease.tryAcquire(floor), limit, 'taking the leader lease')) {
        if (this.stopped) {
          // stop() ran while the lease was being taken: hand it straight back.
          await lease.release().catch(() => {});
          return;
        }
        log.info(`leader with token ${lease.token}`);
        try {
          await withTimeLimit(this.becomeLeader(), STEP_LIMIT_MS, 'becoming leader (recovery and the first discovery pass)');
        } catch (err) {
          // Do not sit on a lease without leading: let this or another coordinator try again.
          await lease.release().catch(() => {});
          throw err;
        }
      }
    } catch (err) {
      log.warn(`leadership check failed: ${errorMessage(err)}`);
    } finally {
      this.acquiring = false;
    }
  }

  /**
   * A floor for new tokens if Redis lost its counter: the leader token of the newest manifest,
   * and of the newest staged round (its leader may still be running, unaware it was deposed).
   */
  private async newestStoredToken(): Promise<number> {
    const { catalog } = this.parts;
    const latest = await catalog.latestEpoch();
    const visible = latest > 0 ? (await catalog.get(latest)).leaderToken : 0;
    return Math.max(visible, (await catalog.newestStaged()).leaderToken);
  }

  /** Recovery before the first round (see recovery.ts), then the leader's duties. */
  private async becomeLeader(): Promise<void> {
    const { catalog, discovery, lease } = this.parts;
    const token = lease.token;
    this.undelivered.clear();
    await this.recover();
    const latest = await catalog.latestEpoch();
    this.lastCommit = undefined;
    if (latest > 0) {
      const manifest = await catalog.get(latest);
      discovery.remember(
        manifest.queues.map((q) => ({ definition: q.definition!, journal: q.journal, deleted: true })),
        manifest.startedAtMs,
      );
      this.lastCommit = { epoch: latest, committedAtMs: manifest.committedAtMs, incompleteQueues: incompleteQueues(manifest).length };
    }
    // Given up on (time limit) and the lease released meanwhile, or stopping: this attempt must not lead.
    if (lease.token !== token || this.stopped) return;
    this.leading = true;
    this.nextRoundAt = Date.now() + this.parts.config.interval;
    await this.enqueue(() => this.discoverAndAssign());
    for (const listener of this.leaderListeners) listener();
  }

  /**
   * Recovery (recovery.ts): presumed abort, finishing committed epochs, and queueing the recent
   * decisions for every live worker, which may have missed them while the leader changed.
   */
  private async recover(): Promise<void> {
    const { decisions, catalog, lease, store, membership, log } = this.parts;
    const report = await recoverRounds({ decisions, catalog, store, holder: lease.holder, leaderToken: lease.token, log });
    this.needsRecovery = false;
    // A round that ended in doubt may just have become visible (metrics only: never fails recovery).
    const finished = Math.max(0, ...report.finished);
    if (finished > (this.lastCommit?.epoch ?? 0)) {
      const manifest = await catalog.get(finished).catch(() => undefined);
      if (manifest) this.lastCommit = { epoch: finished, committedAtMs: manifest.committedAtMs, incompleteQueues: incompleteQueues(manifest).length };
    }
    const workers = await membership.live();
    this.refreshClients(workers);
    for (const round of report.decided) {
      const decision = round.outcome === 'committed' ? Decision.DECISION_COMMIT : Decision.DECISION_ABORT;
      for (const worker of workers) this.undelivered.remember(worker.id, { leaderToken: lease.token, epoch: round.epoch, roundId: round.roundId, decision });
    }
  }

  /** Stops leading until the lease is won again; the fence channels are a leader's. */
  private stepDown(): void {
    this.leading = false;
    void this.fences.close();
  }

  /** Re-sends undelivered decisions; those of workers that left membership are dropped. */
  private async redeliver(): Promise<void> {
    if (this.redelivering || this.undelivered.size === 0) return;
    this.redelivering = true;
    try {
      const { lease, log } = this.parts;
      for (const workerId of this.undelivered.workers()) {
        const client = this.clients.get(workerId);
        if (!client) {
          this.undelivered.drop(workerId);
          continue;
        }
        for (let request = this.undelivered.next(workerId); request; request = this.undelivered.next(workerId)) {
          if (!(await deliverDecision(client, { ...request, leaderToken: lease.token }, REDELIVER_ATTEMPTS, log))) break; // still unreachable: try again next tick
          this.undelivered.settled(workerId, request.roundId);
        }
      }
    } finally {
      this.redelivering = false;
    }
  }

  private lastDiscovery = 0;

  /** The step the leader's timer is in, and since when (for the stall warning). */
  private working: { step: string; sinceMs: number } | undefined;
  private readonly stallWarn: (message: string) => void;

  /**
   * The leader's timer: re-send decisions, recover an in-doubt round, discovery, scheduled rounds.
   * A tick that is still busy (a slow pass, a worker that does not answer) makes the next ticks
   * skip, rather than queue passes and rounds that would run back to back later. Recovery and
   * discovery have a time limit; a round ends by its own deadlines. A tick busy for longer than
   * a few discovery intervals, and a lease that lapsed unrenewed, are logged: a leader that has
   * stopped working must say so.
   */
  private async scheduledWork(): Promise<void> {
    if (this.stopped) return;
    const { config, lease, log } = this.parts;
    if (this.leading && !lease.held && lease.token > 0) {
      this.stallWarn(`leader lease not renewed for more than ${config.leaseTime} ms: not leading until a renewal succeeds`);
      return;
    }
    if (!this.isLeader) return;
    if (this.working) {
      const busyMs = Date.now() - this.working.sinceMs;
      if (busyMs > Math.max(10_000, 3 * config.discoveryInterval)) {
        this.stallWarn(`leader busy for ${Math.round(busyMs / 1000)} s in ${this.working.step}; discovery and scheduled rounds wait`);
      }
      return;
    }
    const step = async (name: string, work: () => Promise<unknown>) => {
      this.working = { step: name, sinceMs: Date.now() };
      await work().catch((err) => log.warn(`${name} failed, will retry: ${errorMessage(err)}`));
    };
    try {
      void this.redeliver().catch((err) => log.warn(`re-sending decisions failed: ${errorMessage(err)}`));
      if (this.needsRecovery) {
        await step('recovery of an in-doubt round', () => this.enqueue(() => this.recover(), STEP_LIMIT_MS, 'recovery'));
      }
      if (Date.now() - this.lastDiscovery >= config.discoveryInterval) {
        this.lastDiscovery = Date.now();
        await step('discovery pass', () => this.enqueue(() => this.discoverAndAssign(), STEP_LIMIT_MS, 'discovery pass'));
      }
      if (config.interval > 0 && Date.now() >= this.nextRoundAt) {
        this.nextRoundAt = Date.now() + config.interval;
        await step('scheduled round', () => this.startRound());
      }
    } finally {
      this.working = undefined;
    }
  }

  /** Runs `work` after the work queued before it; `limitMs` gives it up (see withTimeLimit). */
  private enqueue<T>(work: () => Promise<T>, limitMs?: number, what = 'leader work'): Promise<T> {
    const run = this.serial.then(() => (limitMs === undefined ? work() : withTimeLimit(work(), limitMs, what)));
    this.serial = run.catch(() => {});
    return run;
  }

  /** One discovery pass, then the assignment of every protected queue to a live worker. */
  private async discoverAndAssign(): Promise<void> {
    // Work queued before this coordinator was deposed is dropped.
    if (!this.isLeader) return;
    const { discovery, log } = this.parts;
    try {
      const result = await discovery.pass();
      this.protectedQueues = result.queues;
      this.exchanges = result.exchanges;
      this.waiting = result.waiting;
      this.renewed = result.renewed;
      this.uncapturable = result.uncapturable;
    } catch (err) {
      log.warn(`discovery failed, keeping the previous protected set: ${errorMessage(err)}`);
    }
    await this.assignQueues();
    await this.observeCoverage().catch((err) => log.warn(`coverage check failed, will retry: ${errorMessage(err)}`));
  }

  /** Protected queues whose coverage is not known yet (all of them before the first pass). */
  private coverageUnchecked(): number {
    return this.coverage.unchecked() ?? this.protectedQueues.size;
  }

  /** Compares each protected queue's publishes with what its journal received (coverage.ts). */
  private async observeCoverage(): Promise<void> {
    const queues = [...this.protectedQueues.values()].filter((q) => !q.deleted);
    const samples = await sampleCoverage(this.parts.management, queues, this.clients.values(), WORKER_STATUS_DEADLINE_MS, this.uncapturable);
    const known = new Map(this.coverage.gaps().map((g) => [`${g.vhost}/${g.queue}`, gapPaths(g).join('; ')]));
    this.coverage.observe(samples);
    for (const gap of this.coverage.gaps()) {
      // Logged again only when its paths change (a new one, or messages counted on a known one), not as counts grow.
      if (known.get(`${gap.vhost}/${gap.queue}`) === gapPaths(gap).join('; ')) continue;
      this.parts.log.warn(
        `coverage gap: ${gap.vhost}/${gap.queue} receives messages its journal does not (${gap.reason}); ` +
          `${gap.uncaptured} counted so far; checkpoints do not hold them. See "tidemark status" and docs/OPERATIONS.md#coverage`,
      );
    }
  }

  private async assignQueues(): Promise<void> {
    const { membership, catalog, lease, log } = this.parts;
    const workers = await membership.live();
    this.refreshClients(workers);
    const owners = assign(this.protectedQueues.keys(), workers.map((w) => w.id));
    const latest = await catalog.latestEpoch();
    const manifest = latest > 0 ? await catalog.get(latest) : undefined;
    const base = new Map(manifest?.queues.map((q) => [queueKey(q.definition!.vhost, q.definition!.name), q]));
    this.generation += 1;
    const acked = new Map<string, { address: string; queues: QueueRef[] }>();
    const failures: string[] = [];
    let outranked = 0;
    await Promise.all(
      workers.map(async (worker) => {
        const ids = owners.get(worker.id) ?? [];
        const queues: QueueAssignment[] = ids.map((id) => {
          const q = this.protectedQueues.get(id)!;
          // A renewed journal does not hold the offsets its checkpoints name: capture starts afresh.
          const b = this.renewed.has(id) ? undefined : base.get(id);
          return {
            definition: q.definition,
            journal: q.journal,
            resumeOffset: b?.cutOffset ?? 0,
            baseEpoch: b ? latest : 0,
            baseMessages: b?.messages ?? 0,
            baseBodyBytes: b?.bodyBytes ?? 0,
            startOffset: b?.startOffset ?? 0,
          };
        });
        try {
          // A stalled worker must not hold up the pass (and the rounds queued behind it) for long.
          await this.clients.get(worker.id)!.assign({ leaderToken: lease.token, generation: this.generation, queues }, this.parts.config.prepareTimeout);
          acked.set(worker.id, { address: worker.address, queues: queues.map((q) => ({ vhost: q.definition!.vhost, queue: q.definition!.name })) });
        } catch (err) {
          log.warn(`assignment to worker ${worker.id} failed: ${errorMessage(err)}`);
          if (ids.length > 0) failures.push(`worker ${worker.id} did not take its ${ids.length} queue(s): ${errorMessage(err)}`);
          if (err instanceof StaleLeaderError && err.current >= lease.token) outranked = Math.max(outranked, err.current);
        }
      }),
    );
    if (outranked > 0) {
      // A worker has seen a higher token than ours although Redis names us leader: Redis lost its
      // counter and the store could not show the token a later leader used. Without a higher
      // token no worker will ever listen: give the lease up and take it again above that token.
      log.warn(`a worker has seen leader token ${outranked}, above this leader's ${lease.token}: taking a new lease above it`);
      this.tokenFloor = Math.max(this.tokenFloor, outranked);
      this.stepDown();
      await lease.release().catch(() => {});
      return;
    }
    this.assignment = acked;
    this.assignmentFailures = failures;
  }

  private refreshClients(workers: WorkerRegistration[]): void {
    const live = new Set(workers.map((w) => w.id));
    for (const [id, client] of this.clients) {
      const current = workers.find((w) => w.id === id);
      if (!live.has(id) || current?.address !== client.address) {
        client.close();
        this.clients.delete(id);
      }
    }
    for (const worker of workers) {
      if (!this.clients.has(worker.id)) this.clients.set(worker.id, new WorkerClient(worker.address, { workerId: worker.id }));
    }
  }

  /** Runs a round after any discovery pass in progress; `onEpoch` hears the epoch once taken. */
  startRound(onEpoch?: (epoch: number) => void): Promise<RoundResult> {
    if (!this.isLeader) return Promise.reject(new FailedPreconditionError(`coordinator ${this.id} is not the leader; send the request to the leader (see "tidemark status")`));
    return this.enqueue(() => this.round(onEpoch));
  }

  private async round(onEpoch?: (epoch: number) => void): Promise<RoundResult> {
    const { config, catalog, decisions, lease, log } = this.parts;
    // A round of ours that ended in doubt is finished (or presumed aborted) before the next one.
    if (this.needsRecovery) await this.recover();
    const startedAtMs = Date.now();
    // One listing gives both the parent and the set a worker's base must belong to.
    const visibleEpochs = await catalog.epochs();
    const latest = visibleEpochs.length > 0 ? visibleEpochs[visibleEpochs.length - 1] : 0;
    const epoch = await decisions.nextEpoch(lease.holder, lease.token, latest, async () => (await catalog.newestStaged()).epoch);
    const roundId = `${lease.token}-${epoch}-${randomBytes(6).toString('hex')}`;
    try {
      await decisions.record(lease.holder, { epoch, roundId, state: 'started', reason: '', leaderToken: lease.token, atMs: startedAtMs });
    } catch (err) {
      // The write may have landed with its reply lost: recovery presumes it aborted.
      this.needsRecovery = true;
      throw err;
    }
    onEpoch?.(epoch);
    const visible = new Set(visibleEpochs);
    const participants: RoundParticipant[] = [...this.assignment.entries()]
      .filter(([, acked]) => acked.queues.length > 0)
      .map(([workerId, acked]) => ({ workerId, queues: acked.queues }));
    const queues = new Map([...this.protectedQueues].map(([id, q]) => [id, { definition: q.definition, journal: q.journal }]));
    const prior = await this.priorEntries(latest);
    const result = await runRound({
      namespace: config.namespace,
      plan: {
        epoch,
        roundId,
        leaderToken: lease.token,
        coordinatorId: this.id,
        startedAtMs,
        vhosts: [...new Set([...queues.values()].map((q) => q.definition.vhost))].sort(),
        fenceExchange: fenceExchangeName(config.namespace),
        participants,
        queues,
        exchanges: this.exchanges,
        parentEpoch: latest,
        isVisible: (e) => visible.has(e),
        prior,
        renewed: new Map([...this.renewed].filter(([id]) => queues.has(id))),
        unassignedWhy: this.assignmentFailures.join('; '),
      },
      holder: lease.holder,
      decisions,
      catalog,
      workers: this.clients,
      fences: this.fences,
      continuity: this.continuity,
      prepareTimeoutMs: config.prepareTimeout,
      consolidate: epoch - this.lastFullEpoch >= config.fullEvery,
      stillLeader: () => this.isLeader,
      undelivered: (workerId, request) => this.undelivered.remember(workerId, request),
      log,
      signal: this.stopping.signal,
    });
    if (result.outcome === 'in-doubt' || result.effectFailed) this.needsRecovery = true;
    // The decision log only needs recent epochs; keep Redis from growing with every round.
    await decisions.forgetDecidedThrough(epoch - DECISIONS_KEPT).catch((err) => log.warn(`trimming the decision log failed: ${errorMessage(err)}`));
    if (result.outcome === 'committed') {
      this.counters.committed += 1;
      if (result.manifest?.full) this.lastFullEpoch = epoch;
      if (result.manifest) {
        this.lastCommit = { epoch, committedAtMs: result.manifest.committedAtMs, incompleteQueues: incompleteQueues(result.manifest).length };
        await this.rearmSentinels(result.manifest);
        this.parts.discovery.committed(new Set(result.manifest.queues.map((q) => queueKey(q.definition!.vhost, q.definition!.name))), result.manifest.startedAtMs);
      }
    } else if (result.outcome === 'aborted') {
      this.counters.aborted += 1;
    }
    const durationMs = Date.now() - startedAtMs;
    this.metrics.roundFinished(result.outcome, durationMs);
    this.lastRound = { epoch, outcome: result.outcome, reason: result.reason, startedAtMs, durationMs };
    return result;
  }

  /** Each queue's cut and marks in checkpoint `epoch` (0: none), which the next round builds on. */
  private async priorEntries(epoch: number): Promise<Map<string, PriorEntry>> {
    const prior = new Map<string, PriorEntry>();
    if (epoch === 0) return prior;
    const manifest = await this.parts.catalog.get(epoch);
    for (const q of manifest.queues) {
      prior.set(queueKey(q.definition!.vhost, q.definition!.name), { cutOffset: q.cutOffset, incomplete: q.incomplete });
    }
    return prior;
  }

  /**
   * A checkpoint that marked a vhost's queues for a broker restart has committed: the vhost's
   * sentinel is declared again, so the next restart is seen. If that fails the sentinel stays
   * missing and the next round marks the queues again, which is safe.
   */
  private async rearmSentinels(manifest: CheckpointManifest): Promise<void> {
    const vhosts = new Set(manifest.queues.filter((q) => q.incomplete.some((m) => m.epoch === manifest.epoch)).map((q) => q.definition!.vhost));
    for (const vhost of vhosts) {
      await this.continuity.arm(vhost).catch((err) => this.parts.log.warn(`declaring the restart sentinel of vhost ${vhost} failed: ${errorMessage(err)}; the next round marks its queues again`));
    }
  }

  async status(): Promise<StatusReply> {
    const { lease, membership, catalog, config } = this.parts;
    const workers = await membership.live().catch(() => []);
    const latest = await catalog.latestEpoch();
    const latestManifest = latest > 0 ? await catalog.get(latest) : undefined;
    const current = await lease.current().catch(() => undefined);
    return {
      coordinatorId: this.id,
      leader: this.isLeader,
      leaderToken: current?.token ?? 0,
      workers: await Promise.all(
        workers.map(async (w) => {
          // An acknowledgement from an earlier incarnation of the worker does not count.
          const acked = this.assignment.get(w.id);
          const current = acked?.address === w.address;
          return { workerId: w.id, address: w.address, queues: current ? acked.queues.length : 0, ...(await this.workerHealth(w)) };
        }),
      ),
      protectedQueues: this.protectedQueues.size,
      latestCheckpoint: latest,
      latestCheckpointAtMs: latestManifest?.committedAtMs ?? 0,
      roundsCommitted: this.counters.committed,
      roundsAborted: this.counters.aborted,
      lastRound: this.lastRound && { ...this.lastRound, outcome: roundOutcome(this.lastRound.outcome) },
      store: this.parts.store.url,
      intervalMs: config.interval,
      coverageGaps: this.isLeader ? this.coverage.gaps() : [],
      coverageUnchecked: this.isLeader ? this.coverageUnchecked() : 0,
      coverageSettleMs: this.isLeader ? this.coverage.settleMs : 0,
      firehose: this.isLeader ? await this.firehoseRelays() : [],
      incompleteQueues: latestManifest ? incompleteQueues(latestManifest) : [],
      unprotected: this.isLeader ? this.waiting.slice(0, UNPROTECTED_LISTED) : [],
      unprotectedCount: this.isLeader ? this.waiting.length : 0,
      brokerNodes: this.isLeader ? this.brokerNodes() : [],
      journalBoundBytes: this.isLeader ? (this.parts.retention?.boundBytes ?? 0) : 0,
      journalPressure: this.isLeader ? (this.parts.retention?.pressure ?? '') : '',
    };
  }

  /** The broker's nodes as the resource guard last read them. */
  private brokerNodes(): BrokerNode[] {
    return (this.parts.guard?.nodes ?? []).map((n) => ({
      name: n.name,
      fdUsed: n.fdUsed ?? 0,
      fdTotal: n.fdTotal ?? 0,
      memUsed: n.memUsed ?? 0,
      memLimit: n.memLimit ?? 0,
      memAlarm: n.memAlarm,
      diskFree: n.diskFree ?? 0,
      diskFreeLimit: n.diskFreeLimit ?? 0,
      diskFreeAlarm: n.diskFreeAlarm,
    }));
  }

  /** Who relays each firehose vhost, from the broker's consumer list of its firehose queue. */
  private async firehoseRelays(): Promise<RelayView[]> {
    const { management, config } = this.parts;
    const queue = firehoseQueueName(config.namespace);
    return Promise.all(
      [...firehoseVhostsOf(config.firehoseVhosts)].sort().map((vhost) =>
        management.queueConsumers(vhost, queue).then(
          (consumers) => relayView(vhost, consumers),
          (err: unknown) => relayUnknown(vhost, `cannot ask the management API: ${errorMessage(err)}`),
        ),
      ),
    );
  }

  /** Asks a worker how its captures are doing: capture errors surface in status. */
  private async workerHealth(worker: WorkerRegistration): Promise<{ reachable: boolean; error: string }> {
    const client = this.clients.get(worker.id) ?? new WorkerClient(worker.address, { workerId: worker.id });
    try {
      const report = await client.status(WORKER_STATUS_DEADLINE_MS);
      const failing = report.queues.filter((q) => q.error !== '');
      const error = failing.length === 0 ? '' : `${failing.length} queue(s) not capturing: ${failing.slice(0, 3).map((q) => q.error).join('; ')}`;
      return { reachable: true, error };
    } catch (err) {
      return { reachable: false, error: errorMessage(err) };
    } finally {
      if (!this.clients.has(worker.id)) client.close();
    }
  }

  private readonly leaderListeners: Array<() => void> = [];
  private readonly coverage = new CoverageTracker();

  private readonly stopListeners: Array<() => Promise<void>> = [];

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
    this.refreshClients(await this.parts.membership.live());
    return this.clients;
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
    const bounded = (work: Promise<unknown>, what: string) => withTimeLimit(work, STOP_STEP_LIMIT_MS, what).catch((err) => log.warn(`stopping: ${errorMessage(err)}`));
    await bounded(Promise.allSettled(this.stopListeners.map((listener) => listener())), 'interrupting the restores in flight');
    await bounded(this.serial.catch(() => {}), 'the leader work in flight (cut short: the next leader settles it)');
    await bounded(this.parts.lease.release(), 'giving the leader lease back (it runs out by itself)');
    for (const client of this.clients.values()) client.close();
    await this.fences.close();
    await this.parts.connections.close();
    this.parts.redis.disconnect();
    await this.parts.store.close();
  }
}
