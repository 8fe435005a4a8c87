/**
 * The coordinator: the control plane. Holds (or waits for) the leader lease; as leader it runs
 * discovery, assigns queues to live workers by rendezvous hashing, runs checkpoint rounds on a
 * schedule and on demand, and orchestrates restores. Standbys answer status and catalog calls.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Config } from '../core/config.js';
import type { Logger } from '../core/log.js';
import { Catalog } from '../core/catalog.js';
import { Membership, type WorkerRegistration } from '../core/membership.js';
import { ManagementClient } from '../core/amqp/management-client.js';
import { VhostConnections } from '../core/amqp/vhost-connections.js';
import { ProtectionPolicy } from '../core/protect.js';
import { assign } from '../core/rendezvous.js';
import { openStore } from '../core/store/open-store.js';
import type { ObjectStore } from '../core/store/object-store.js';
import { fenceExchangeName } from '../core/names.js';
import { TidemarkError, errorMessage } from '../core/errors.js';
import { WorkerClient } from '../client/worker-client.js';
import type { RoundInfo, StatusReply } from '../gen/tidemark/v1/admin.js';
import type { ExchangeDefinition } from '../gen/tidemark/v1/store.js';
import type { QueueAssignment, QueueRef } from '../gen/tidemark/v1/worker.js';
import { queueKey, type RoundParticipant } from './checkpoint-round.js';
import { DecisionLog } from './decision-log.js';
import { Discovery, type ProtectedQueue } from './discovery.js';
import { LeaderLease } from './leader-lease.js';
import { roundOutcome, runRound, type RoundResult } from './round-runner.js';
import { recoverRounds } from './recovery.js';

/** Decided rounds kept in the Redis decision log (for operators looking back). */
const DECISIONS_KEPT = 1_000;

/** How long status waits for each worker's own report. */
const WORKER_STATUS_DEADLINE_MS = 2_000;

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
  discovery: Discovery;
}

export class Coordinator {
  readonly id: string;
  private protectedQueues = new Map<string, ProtectedQueue>();
  private exchanges: ExchangeDefinition[] = [];
  /** Queues each worker acknowledged in the last pass, with the address it was reached at. */
  private assignment = new Map<string, { address: string; queues: QueueRef[] }>();
  private readonly clients = new Map<string, WorkerClient>();
  private generation = 0;
  private lastFullEpoch = 0;
  private counters = { committed: 0, aborted: 0 };
  private lastRound: RoundInfo | undefined;
  /** Discovery passes and rounds run one at a time, so a round sees one consistent assignment. */
  private serial: Promise<unknown> = Promise.resolve();
  private timers: NodeJS.Timeout[] = [];
  private nextRoundAt = 0;
  private stopped = false;
  private leading = false;

  constructor(private readonly parts: CoordinatorParts) {
    this.id = parts.config.id;
  }

  static async create(config: Config, log: Logger): Promise<Coordinator> {
    const store = await openStore(config);
    const redis = new Redis(config.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
    await redis.connect();
    const connections = new VhostConnections(config.amqpUrl, log.child('amqp'), `tidemark coordinator ${config.id}`);
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
      discovery: new Discovery({
        namespace: config.namespace,
        journalMaxAge: config.journalMaxAge,
        management: new ManagementClient(config.managementUrl),
        connections,
        policy: new ProtectionPolicy(config.protect, config.namespace),
        log: log.child('discovery'),
      }),
    });
  }

  get isLeader(): boolean {
    return this.leading && this.parts.lease.token > 0;
  }

  get catalog(): Catalog {
    return this.parts.catalog;
  }

  /** Starts competing for leadership; the leader's duties start when the lease is won. */
  async start(): Promise<void> {
    const { config } = this.parts;
    await this.leadershipTick();
    this.timers.push(setInterval(() => void this.leadershipTick(), Math.max(200, Math.floor(config.leaseTime / 3))));
    this.timers.push(setInterval(() => void this.scheduledWork(), Math.min(config.discoveryInterval, 1_000)));
  }

  private async leadershipTick(): Promise<void> {
    const { lease, log } = this.parts;
    try {
      // Held leases are renewed, also while recovery runs before the leader's first round.
      if (lease.token > 0) {
        if (!(await lease.renew())) {
          this.leading = false;
          log.warn('leader lease lost: stepping down');
        }
        return;
      }
      // Standbys poll cheaply; the store is read only when the lease is free.
      if (await lease.current()) return;
      if (await lease.tryAcquire(await this.newestStoredToken())) {
        log.info(`leader with token ${lease.token}`);
        try {
          await this.becomeLeader();
        } catch (err) {
          // Do not sit on a lease without leading: let this or another coordinator try again.
          await lease.release().catch(() => {});
          throw err;
        }
      }
    } catch (err) {
      log.warn(`leadership check failed: ${errorMessage(err)}`);
    }
  }

  /** The leader token of the newest manifest: a floor for new tokens if Redis lost its counter. */
  private async newestStoredToken(): Promise<number> {
    const latest = await this.parts.catalog.latestEpoch();
    return latest > 0 ? (await this.parts.catalog.get(latest)).leaderToken : 0;
  }

  /** Recovery before the first round (see recovery.ts), then the leader's duties. */
  private async becomeLeader(): Promise<void> {
    const { decisions, catalog, lease, discovery, store, log } = this.parts;
    await recoverRounds({ decisions, catalog, store, holder: lease.holder, leaderToken: lease.token, log });
    const latest = await catalog.latestEpoch();
    if (latest > 0) {
      const manifest = await catalog.get(latest);
      discovery.remember(manifest.queues.map((q) => ({ definition: q.definition!, journal: q.journal, deleted: true })));
    }
    this.leading = true;
    this.nextRoundAt = Date.now() + this.parts.config.interval;
    await this.enqueue(() => this.discoverAndAssign());
  }

  private lastDiscovery = 0;

  private async scheduledWork(): Promise<void> {
    if (!this.isLeader || this.stopped) return;
    const { config } = this.parts;
    const now = Date.now();
    if (now - this.lastDiscovery >= config.discoveryInterval) {
      this.lastDiscovery = now;
      await this.enqueue(() => this.discoverAndAssign()).catch(() => {});
    }
    if (config.interval > 0 && now >= this.nextRoundAt) {
      this.nextRoundAt = now + config.interval;
      await this.startRound().catch(() => {});
    }
  }

  private enqueue<T>(work: () => Promise<T>): Promise<T> {
    const run = this.serial.then(work);
    this.serial = run.catch(() => {});
    return run;
  }

  /** One discovery pass, then the assignment of every protected queue to a live worker. */
  private async discoverAndAssign(): Promise<void> {
    const { discovery, log } = this.parts;
    try {
      const result = await discovery.pass();
      this.protectedQueues = result.queues;
      this.exchanges = result.exchanges;
    } catch (err) {
      log.warn(`discovery failed, keeping the previous protected set: ${errorMessage(err)}`);
    }
    await this.assignQueues();
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
    await Promise.all(
      workers.map(async (worker) => {
        const ids = owners.get(worker.id) ?? [];
        const queues: QueueAssignment[] = ids.map((id) => {
          const q = this.protectedQueues.get(id)!;
          const b = base.get(id);
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
        }
      }),
    );
    this.assignment = acked;
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
    if (!this.isLeader) return Promise.reject(new TidemarkError(`coordinator ${this.id} is not the leader; send the request to the leader`));
    return this.enqueue(() => this.round(onEpoch));
  }

  private async round(onEpoch?: (epoch: number) => void): Promise<RoundResult> {
    const { config, catalog, decisions, lease, log } = this.parts;
    const startedAtMs = Date.now();
    // One listing gives both the parent and the set a worker's base must belong to.
    const visibleEpochs = await catalog.epochs();
    const latest = visibleEpochs.length > 0 ? visibleEpochs[visibleEpochs.length - 1] : 0;
    const epoch = await decisions.nextEpoch(lease.holder, lease.token, latest);
    await decisions.record(lease.holder, { epoch, state: 'started', reason: '', leaderToken: lease.token, atMs: startedAtMs });
    onEpoch?.(epoch);
    const visible = new Set(visibleEpochs);
    const participants: RoundParticipant[] = [...this.assignment.entries()]
      .filter(([, acked]) => acked.queues.length > 0)
      .map(([workerId, acked]) => ({ workerId, queues: acked.queues }));
    const queues = new Map([...this.protectedQueues].map(([id, q]) => [id, { definition: q.definition, journal: q.journal }]));
    const result = await runRound({
      namespace: config.namespace,
      plan: {
        epoch,
        roundId: `${lease.token}-${epoch}-${randomBytes(6).toString('hex')}`,
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
      },
      holder: lease.holder,
      decisions,
      catalog,
      workers: this.clients,
      connect: (vhost) => this.parts.connections.connect(vhost),
      prepareTimeoutMs: config.prepareTimeout,
      consolidate: epoch - this.lastFullEpoch >= config.fullEvery,
      stillLeader: () => this.isLeader,
      log,
    });
    // The decision log only needs recent epochs; keep Redis from growing with every round.
    await decisions.forgetDecidedThrough(epoch - DECISIONS_KEPT).catch((err) => log.warn(`trimming the decision log failed: ${errorMessage(err)}`));
    if (result.outcome === 'committed') {
      this.counters.committed += 1;
      if (result.manifest?.full) this.lastFullEpoch = epoch;
    } else if (result.outcome === 'aborted') {
      this.counters.aborted += 1;
    }
    this.lastRound = {
      epoch,
      outcome: roundOutcome(result.outcome),
      reason: result.reason,
      startedAtMs,
      durationMs: Date.now() - startedAtMs,
    };
    return result;
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
      lastRound: this.lastRound,
      store: this.parts.store.url,
      intervalMs: config.interval,
    };
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

  /** Live workers and their clients, for restores. */
  async liveWorkers(): Promise<Map<string, WorkerClient>> {
    this.refreshClients(await this.parts.membership.live());
    return this.clients;
  }

  get leaderToken(): number {
    return this.parts.lease.token;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    await this.serial.catch(() => {});
    await this.parts.lease.release().catch(() => {});
    for (const client of this.clients.values()) client.close();
    await this.parts.connections.close();
    this.parts.redis.disconnect();
    await this.parts.store.close();
  }
}
