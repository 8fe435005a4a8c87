/**
 * The worker: the data plane. Captures the journals of the queues the leader assigns to it,
 * votes in checkpoint rounds, and runs restore tasks. What it decides as a participant of rounds
 * (stale leaders, idempotent PREPARE, decided rounds, which rounds to ask about) is the pure
 * Participant (participant.ts), which the simulation runs too; this file does the I/O.
 */
import type { Redis } from 'ioredis';
import {
  abortable,
  Catalog,
  type Clock,
  type Config,
  DecisionLog,
  errorMessage,
  failpoint,
  loadBackendTls,
  type Logger,
  Membership,
  NotFoundError,
  queueKey,
  redisKeys,
  RestoreStateStore,
  StoppingError,
  systemClock,
  withTimeLimit,
} from '../core/index.js';
import { configureAmqpTls } from '../core/amqp/index.js';
import { openRedis } from '../core/redis/index.js';
import { encodePartition, meteredStore, type ObjectStore, openStoreRetrying, partitionKey } from '../core/store/index.js';
import { answerInquiry, countedFor } from './decision-inquiry.js';
import { countedOf, failedReason, inquiryIntervalMs, Participant, type QueueOutcome, type RoundOutcome, splitOutcomes } from './participant.js';
import { LeaderConfirmation } from './leader-confirmation.js';
import {
  Decision,
  Vote,
  type AssignReply,
  type AssignRequest,
  type DecideRequest,
  type PrepareReply,
  type PrepareRequest,
  type QueueFailure,
  type RestoreProgress,
  type RestoreTask,
  type WorkerStatus,
} from '../gen/tidemark/v1/worker.js';
import { CaptureSet } from './capture-set.js';
import { FirehoseRelay } from './firehose-relay.js';
import { runRestoreTask } from './restore-runner.js';
import { createHash } from 'node:crypto';
import { InvalidAssignmentError } from './errors.js';
import { type CaptureReading, WorkerMetrics } from './worker-metrics.js';

export interface WorkerOptions {
  config: Config;
  log: Logger;
  /** What its votes, staged partitions and decision inquiries read the time from. @default systemClock */
  clock?: Clock;
}

/**
 * How long stop() waits for restore tasks and prepares it has interrupted to close their
 * connections, and for Redis to take the worker out of the membership: a broker or Redis that
 * stopped answering must not hold the stop (the lease then simply runs out).
 */
const STOP_STEP_LIMIT_MS = 3_000;

/** How often the lag probe reads where every captured journal's tail is (capture-set.ts). */
const LAG_PROBE_INTERVAL_MS = 10_000;

export class Worker {
  readonly id: string;
  private generation = 0;
  private lastPreparedEpoch = 0;
  private heartbeat: NodeJS.Timeout | undefined;
  private registered = false;
  private flusher: NodeJS.Timeout | undefined;
  private inquirer: NodeJS.Timeout | undefined;
  private prober: NodeJS.Timeout | undefined;
  private inquiring = false;
  /** Rounds and leader tokens; a round's vote is a promise a repeated PREPARE awaits too (idempotence). */
  private participant = new Participant<Promise<PrepareReply>>();
  private readonly decisionLog: DecisionLog;
  /** Confirms a new leader token against the lease in Redis before it is adopted. */
  private readonly confirmation: LeaderConfirmation;
  private readonly restoreState: RestoreStateStore;
  private readonly catalog: Catalog;
  private readonly relay: FirehoseRelay;
  /** Aborts the restores and prepares in flight when the worker stops. */
  private readonly stopping = new AbortController();
  /** Restore tasks in flight: stop() waits (a while) for them to close their connections. */
  private readonly tasks = new Set<Promise<void>>();
  private readonly clock: Clock;

  private constructor(
    private readonly options: WorkerOptions,
    private readonly store: ObjectStore,
    private readonly redis: Redis,
    private readonly membership: Membership,
    private readonly captures: CaptureSet,
    /** Prometheus metrics, served when `metricsListen` is set (index.ts). */
    readonly metrics: WorkerMetrics,
  ) {
    this.id = options.config.id;
    this.clock = options.clock ?? systemClock;
    this.decisionLog = new DecisionLog(redis, options.config.namespace);
    this.confirmation = new LeaderConfirmation(redis, options.config.namespace);
    this.restoreState = new RestoreStateStore(redis, options.config.namespace);
    this.catalog = new Catalog(store);
    this.relay = new FirehoseRelay({
      namespace: options.config.namespace,
      amqpUrl: options.config.amqpUrl,
      log: options.log.child('relay'),
      clientName: `tidemark worker ${options.config.id}`,
      workerId: options.config.id,
      window: options.config.prefetch,
      clock: this.clock,
    });
  }

  /** The Redis client and the store, for the health checks (worker-health.ts). */
  get dependencies(): { redis: Redis; store: ObjectStore } {
    return { redis: this.redis, store: this.store };
  }

  /**
   * Opens the store and Redis. `signal` gives up a connect that does not answer (the service is
   * being stopped while it starts); whatever was opened is closed again when create() fails.
   */
  static async create(options: WorkerOptions, signal?: AbortSignal): Promise<Worker> {
    const { config, log } = options;
    // First: an unreadable certificate file is a configuration error, found before anything is opened.
    const backends = loadBackendTls(config);
    configureAmqpTls(config.amqpUrl, backends.amqp, backends.amqpExternal);
    const store = await openStoreRetrying(config, signal, (err, delayMs) => log.warn('store not ready; retrying', { retryMs: delayMs, err: errorMessage(err) }));
    let redis: Redis | undefined;
    try {
      // An encrypted store: this process's data key is made (and stored wrapped) now, not on the
      // first segment a capture waits for. A failure here is retried by that first write.
      await store.vault?.prepare().catch((err: unknown) => log.warn('cannot store this worker\'s data key yet; the first segment written tries again', { err: errorMessage(err) }));
      redis = await openRedis(config.redisUrl, log.child('redis'), signal, backends.redis);
      return await Worker.assemble(options, store, redis, signal);
    } catch (err) {
      redis?.disconnect();
      await store.close().catch(() => {});
      throw err;
    }
  }

  private static async assemble(options: WorkerOptions, store: ObjectStore, redis: Redis, signal?: AbortSignal): Promise<Worker> {
    const { config, log } = options;
    const membership = new Membership(redis, config.namespace, config.leaseTime, options.clock);
    let worker: Worker | undefined;
    const metrics = new WorkerMetrics({ captures: () => worker?.captureReadings() ?? [], restoresRunning: () => worker?.tasks.size ?? 0 });
    const metered = meteredStore(store, metrics.store);
    const captures = new CaptureSet({
      namespace: config.namespace,
      amqpUrl: config.amqpUrl,
      store: metered,
      uploads: metrics.uploads,
      log: log.child('capture'),
      segmentBytes: config.segmentBytes,
      segmentCodec: config.segmentCodec,
      prefetch: config.prefetch,
      channelsPerConnection: config.channelsPerConnection,
      clientName: `tidemark worker ${config.id}`,
    });
    worker = new Worker(options, metered, redis, membership, captures, metrics);
    // A restarted worker must still refuse leaders deposed before it started: the newest token
    // issued so far is the floor (if Redis lost it, new tokens start above the store's newest).
    worker.participant = new Participant(Number((await abortable(redis.get(redisKeys(config.namespace).leaderToken), signal)) ?? 0) || 0);
    return worker;
  }

  /**
   * Joins the membership under `address` (host:port the leader reaches it at) and starts the
   * flush timer. `signal` gives up joining (the worker is being stopped); stop() cleans up.
   */
  async start(address: string, signal?: AbortSignal): Promise<void> {
    const registration = { id: this.id, address, startedAtMs: this.clock.now() };
    this.registered = true; // from here stop() takes the worker out of the membership
    await abortable(this.membership.renew(registration), signal);
    const every = Math.max(200, Math.floor(this.options.config.leaseTime / 3));
    this.heartbeat = setInterval(() => {
      this.membership.renew(registration).catch((err) => this.options.log.warn('membership lease renewal failed', { err: errorMessage(err) }));
    }, every);
    this.flusher = setInterval(() => this.captures.tick(), this.options.config.flushInterval);
    this.inquirer = setInterval(() => void this.inquire(), inquiryIntervalMs(this.options.config.leaseTime));
    this.prober = setInterval(() => void this.captures.probeTails().catch((err) => this.options.log.debug('lag probe failed', { err: errorMessage(err) })), LAG_PROBE_INTERVAL_MS);
    this.options.log.info('worker registered', { address });
  }

  /**
   * Cuts short the restore tasks and prepares in flight (their calls end with an error, and the
   * leader retries the queues elsewhere from their recorded progress; a cut prepare votes NO).
   * Called first when the service stops, so the gRPC server's grace period is not spent on them.
   */
  interrupt(): void {
    if (!this.stopping.signal.aborted) this.stopping.abort(new StoppingError(`worker ${this.id} is stopping`));
  }

  async stop(): Promise<void> {
    this.interrupt();
    clearInterval(this.heartbeat);
    clearInterval(this.flusher);
    clearInterval(this.inquirer);
    clearInterval(this.prober);
    await withTimeLimit(Promise.allSettled(this.tasks), STOP_STEP_LIMIT_MS, 'waiting for restore tasks to stop').catch((err) => this.options.log.warn('a stop step did not finish', { step: 'waiting for restore tasks to stop', err: errorMessage(err) }));
    if (this.registered) await withTimeLimit(this.membership.leave(this.id), STOP_STEP_LIMIT_MS, 'leaving the membership').catch(() => {});
    await this.relay.close();
    await this.captures.close();
    this.redis.disconnect();
    await this.store.close();
  }

  /** A token above every one seen is adopted only if it is the current lease's (leader-confirmation.ts). */
  private confirmToken(token: number): Promise<void> {
    return this.confirmation.confirm(token, this.participant.seenToken);
  }

  async assign(request: AssignRequest): Promise<AssignReply> {
    await this.confirmToken(request.leaderToken);
    // A new leader's first assignment wins even if its generation counter restarted.
    const newer = request.leaderToken > this.participant.seenToken || request.generation >= this.generation;
    this.participant.checkToken(request.leaderToken);
    for (const a of request.queues) {
      if (!a.definition?.name || !a.journal) throw new InvalidAssignmentError('assignment names a queue without a definition or journal');
    }
    if (newer) {
      this.generation = request.generation;
      await this.captures.apply(request.queues);
    }
    // Vhosts in firehose mode need a relay among the workers holding their queues.
    const vhosts = new Set(request.queues.map((a) => a.definition!.vhost));
    await this.relay.watch(vhosts).catch((err) => this.options.log.warn('firehose relay: watching vhosts failed', { vhosts: [...vhosts], err: errorMessage(err) }));
    return { generation: this.generation, capturing: this.captures.all().length };
  }

  /**
   * Phase one. Idempotent: a repeated PREPARE of a round being prepared or voted YES in gets the
   * same vote (and the same staged partition); one of a round already decided gets NO.
   */
  async prepare(request: PrepareRequest, signal: AbortSignal): Promise<PrepareReply> {
    await this.confirmToken(request.leaderToken);
    const { participant } = this;
    const admitted = participant.prepare(request);
    if (admitted.kind === 'decided') return this.no(admitted.reason);
    let round = admitted.kind === 'repeat' ? admitted.round : undefined;
    if (!round) {
      const reply = this.prepareRound(request, AbortSignal.any([signal, this.stopping.signal]));
      const prepared = (round = participant.begin(request, reply));
      reply.then(
        (r) => participant.voted(prepared, r.vote === Vote.VOTE_YES, this.clock.now()),
        () => participant.failed(prepared),
      );
    }
    const reply = await round.preparing;
    if (reply.vote === Vote.VOTE_YES) await failpoint('worker.after-vote', { crashAfterMs: 100 });
    return reply;
  }

  private no(reason: string, failed: QueueFailure[] = []): PrepareReply {
    return { vote: Vote.VOTE_NO, reason, workerId: this.id, queues: [], partitionKey: '', partitionSha256: '', failed };
  }

  /**
   * Prepares each queue on its own (G8): a queue whose capture failed, or whose fence or segments
   * did not come in time, is listed as failed, and the vote is YES with the parts of the others.
   */
  private async prepareRound(request: PrepareRequest, signal: AbortSignal): Promise<PrepareReply> {
    const outcomes: QueueOutcome[] = await Promise.all(
      request.queues.map(async ({ vhost, queue, census }): Promise<QueueOutcome> => {
        const capture = this.captures.get(vhost, queue);
        if (!capture) return { vhost, queue, failure: `worker ${this.id} does not capture it` };
        try {
          await failpoint('worker.queue-part');
          return { vhost, queue, part: { ...(await capture.prepare(request.epoch, request.roundId, signal, census)), workerId: this.id } };
        } catch (err) {
          return { vhost, queue, failure: errorMessage(err) };
        }
      }),
    );
    const { parts: queues, failed } = splitOutcomes(outcomes);
    if (queues.length === 0) return this.no(failedReason(this.id, failed), failed);
    try {
      await failpoint('worker.after-segments');
    } catch (err) {
      return this.no(`worker ${this.id}: ${errorMessage(err)}`);
    }
    // Stage the partition manifest so a new leader can finish a committed epoch without us.
    const key = partitionKey(request.epoch, this.id);
    const bytes = await encodePartition({
      formatVersion: 1,
      epoch: request.epoch,
      workerId: this.id,
      leaderToken: request.leaderToken,
      queues,
      preparedAtMs: this.clock.now(),
      roundId: request.roundId,
    }, this.store.vault);
    try {
      await this.store.put(key, bytes);
    } catch (err) {
      return this.no(`worker ${this.id} cannot stage its partition manifest: ${errorMessage(err)}`);
    }
    this.lastPreparedEpoch = request.epoch;
    return {
      vote: Vote.VOTE_YES,
      reason: '',
      workerId: this.id,
      queues,
      partitionKey: key,
      partitionSha256: createHash('sha256').update(bytes).digest('hex'),
      failed,
    };
  }

  /** Phase two. Idempotent: a repeated or late decision changes nothing more. */
  async decide(request: DecideRequest): Promise<void> {
    await this.confirmToken(request.leaderToken);
    this.participant.checkToken(request.leaderToken);
    if (request.decision === Decision.DECISION_COMMIT) await failpoint('worker.after-commit');
    this.apply(request.epoch, request.roundId, request.decision === Decision.DECISION_COMMIT ? 'committed' : 'aborted', countedOf(request));
  }

  /**
   * COMMIT makes the round's cut the base (its manifest is visible) of each queue it counted
   * (`counted`, undefined: all); every other queue forgets the round as on ABORT, keeping its base.
   */
  private apply(epoch: number, roundId: string, outcome: RoundOutcome, counted?: Set<string>): void {
    for (const capture of this.captures.all()) {
      if (outcome === 'committed' && (counted === undefined || counted.has(queueKey(capture.vhost, capture.queue)))) capture.commit(epoch, roundId);
      else capture.abort(epoch, roundId);
    }
    this.participant.learned(roundId, outcome);
  }

  /**
   * Asks for the decision of every round voted YES in longer than two lease times ago and not
   * decided since: the decision log and the store answer (see decision-inquiry.ts).
   */
  private async inquire(): Promise<void> {
    if (this.inquiring) return;
    this.inquiring = true;
    try {
      for (const round of this.participant.due(this.clock.now(), this.options.config.leaseTime)) {
        const record = await this.decisionLog.get(round.epoch);
        const manifest = await this.catalog.get(round.epoch).then(
          (m) => m,
          (err) => {
            if (err instanceof NotFoundError) return undefined;
            throw err;
          },
        );
        const manifestRoundId = manifest?.roundId;
        const newestVisible = record?.state === 'committed' && manifestRoundId === undefined ? await this.catalog.latestEpoch() : undefined;
        const answer = answerInquiry(round, { record, manifestRoundId, newestVisible });
        if (answer === 'wait') continue;
        this.options.log.info('asked for a round\'s decision', { epoch: round.epoch, roundId: round.roundId, decision: answer });
        // The manifest says which of our queues it took from our vote: only those adopt the cut.
        this.apply(round.epoch, round.roundId, answer === 'commit' ? 'committed' : 'aborted', manifest && countedFor(manifest, this.id));
      }
    } catch (err) {
      this.options.log.warn('asking for round decisions failed; will retry', { err: errorMessage(err) });
    } finally {
      this.inquiring = false;
    }
  }

  async restore(task: RestoreTask, emit: (progress: RestoreProgress) => void, signal: AbortSignal): Promise<void> {
    await this.confirmToken(task.leaderToken);
    this.participant.checkToken(task.leaderToken);
    if (this.stopping.signal.aborted) throw this.stopping.signal.reason;
    const running = this.runRestore(task, emit, AbortSignal.any([signal, this.stopping.signal]));
    this.tasks.add(running);
    try {
      await running;
    } finally {
      this.tasks.delete(running);
    }
    // A task cut short by the stop must not look finished to the leader.
    if (this.stopping.signal.aborted) throw this.stopping.signal.reason;
  }

  private async runRestore(task: RestoreTask, emit: (progress: RestoreProgress) => void, signal: AbortSignal): Promise<void> {
    // Progress is recorded under the leader's assignment of each queue to this task (restore-state.ts).
    const assignments = new Map(task.queues.map((q) => [queueKey(q.source!.vhost, q.source!.name), q.assignment]));
    const counted = this.metrics.restoreTask();
    await runRestoreTask({
      task,
      store: this.store,
      defaultAmqpUrl: this.options.config.amqpUrl,
      workerId: this.id,
      confirmWindow: task.confirmWindow || this.options.config.confirmWindow,
      log: this.options.log.child('restore'),
      emit: (progress) => {
        counted(progress);
        emit(progress);
      },
      signal,
      progress: {
        markStarted: (key) => this.restoreState.markStarted(task.restoreId, key, assignments.get(key) ?? ''),
        advance: (key, confirmed, offset) => this.restoreState.advance(task.restoreId, key, confirmed, offset, assignments.get(key) ?? ''),
      },
    });
  }

  /** What a metrics scrape reads of each capture. */
  captureReadings(): CaptureReading[] {
    const now = Date.now();
    return this.captures.all().map((c) => {
      const { lagMessages, lagSeconds } = c.lagNow(now);
      return { vhost: c.vhost, queue: c.queue, durableOffset: c.durableOffset, bufferedBytes: c.bufferedBytes, failed: c.error !== undefined, lagMessages, lagSeconds };
    });
  }

  status(): WorkerStatus {
    return {
      workerId: this.id,
      generation: this.generation,
      leaderToken: this.participant.seenToken,
      queues: this.captures.all().map((c) => c.status()),
      lastPreparedEpoch: this.lastPreparedEpoch,
      undecidedEpochs: this.participant.undecided().map((r) => r.epoch),
    };
  }
}
