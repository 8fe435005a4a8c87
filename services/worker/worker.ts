/**
 * The worker: the data plane. Captures the journals of the queues the leader assigns to it,
 * votes in checkpoint rounds, and runs restore tasks.
 */
import { Redis } from 'ioredis';
import type { Config } from '../core/config.js';
import type { Logger } from '../core/log.js';
import { Membership } from '../core/membership.js';
import { openStore } from '../core/store/open-store.js';
import type { ObjectStore } from '../core/store/object-store.js';
import { encodePartition, partitionKey } from '../core/store/keys.js';
import { StaleLeaderError, TidemarkError, errorMessage } from '../core/errors.js';
import {
  Decision,
  Vote,
  type AssignReply,
  type AssignRequest,
  type DecideRequest,
  type PrepareReply,
  type PrepareRequest,
  type RestoreProgress,
  type RestoreTask,
  type WorkerStatus,
} from '../gen/tidemark/v1/worker.js';
import type { QueueCheckpoint } from '../gen/tidemark/v1/store.js';
import { CaptureSet } from './capture-set.js';
import { runRestoreTask } from './restore-runner.js';
import { createHash } from 'node:crypto';

export interface WorkerOptions {
  config: Config;
  log: Logger;
}

export class Worker {
  readonly id: string;
  private seenToken = 0;
  private generation = 0;
  private lastPreparedEpoch = 0;
  private heartbeat: NodeJS.Timeout | undefined;
  private registered = false;
  private flusher: NodeJS.Timeout | undefined;

  private constructor(
    private readonly options: WorkerOptions,
    private readonly store: ObjectStore,
    private readonly redis: Redis,
    private readonly membership: Membership,
    private readonly captures: CaptureSet,
  ) {
    this.id = options.config.id;
  }

  static async create(options: WorkerOptions): Promise<Worker> {
    const { config, log } = options;
    const store = await openStore(config);
    const redis = new Redis(config.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
    await redis.connect();
    const membership = new Membership(redis, config.namespace, config.leaseTime);
    const captures = new CaptureSet({
      namespace: config.namespace,
      amqpUrl: config.amqpUrl,
      store,
      log: log.child('capture'),
      segmentBytes: config.segmentBytes,
      prefetch: config.prefetch,
      clientName: `tidemark worker ${config.id}`,
    });
    return new Worker(options, store, redis, membership, captures);
  }

  /** Joins the membership under `address` (host:port the leader reaches it at) and starts the flush timer. */
  async start(address: string): Promise<void> {
    const registration = { id: this.id, address, startedAtMs: Date.now() };
    await this.membership.renew(registration);
    this.registered = true;
    const every = Math.max(200, Math.floor(this.options.config.leaseTime / 3));
    this.heartbeat = setInterval(() => {
      this.membership.renew(registration).catch((err) => this.options.log.warn(`lease renewal failed: ${errorMessage(err)}`));
    }, every);
    this.flusher = setInterval(() => this.captures.tick(), this.options.config.flushInterval);
    this.options.log.info(`worker ${this.id} serving at ${address}`);
  }

  async stop(): Promise<void> {
    clearInterval(this.heartbeat);
    clearInterval(this.flusher);
    if (this.registered) await this.membership.leave(this.id).catch(() => {});
    await this.captures.close();
    this.redis.disconnect();
    await this.store.close();
  }

  /** Refuses requests from a deposed leader; remembers the newest token seen. */
  private checkToken(token: number): void {
    if (token < this.seenToken) throw new StaleLeaderError(token, this.seenToken);
    this.seenToken = token;
  }

  async assign(request: AssignRequest): Promise<AssignReply> {
    // A new leader's first assignment wins even if its generation counter restarted.
    const newer = request.leaderToken > this.seenToken || request.generation >= this.generation;
    this.checkToken(request.leaderToken);
    for (const a of request.queues) {
      if (!a.definition?.name || !a.journal) throw new TidemarkError('assignment names a queue without a definition or journal');
    }
    if (newer) {
      this.generation = request.generation;
      await this.captures.apply(request.queues);
    }
    return { generation: this.generation, capturing: this.captures.all().length };
  }

  async prepare(request: PrepareRequest, signal: AbortSignal): Promise<PrepareReply> {
    this.checkToken(request.leaderToken);
    const no = (reason: string): PrepareReply => ({ vote: Vote.VOTE_NO, reason, workerId: this.id, queues: [], partitionKey: '', partitionSha256: '' });
    const missing = request.queues.filter((q) => !this.captures.get(q.vhost, q.queue));
    if (missing.length > 0) {
      return no(`worker ${this.id} does not capture ${missing.map((q) => `${q.vhost}/${q.queue}`).join(', ')}`);
    }
    let queues: QueueCheckpoint[];
    try {
      queues = await Promise.all(
        request.queues.map(async (q) => ({ ...(await this.captures.get(q.vhost, q.queue)!.prepare(request.epoch, request.roundId, signal)), workerId: this.id })),
      );
    } catch (err) {
      return no(`worker ${this.id}: ${errorMessage(err)}`);
    }
    // Stage the partition manifest so a new leader can finish a committed epoch without us.
    const key = partitionKey(request.epoch, this.id);
    const bytes = await encodePartition({
      formatVersion: 1,
      epoch: request.epoch,
      workerId: this.id,
      leaderToken: request.leaderToken,
      queues,
      preparedAtMs: Date.now(),
      roundId: request.roundId,
    });
    try {
      await this.store.put(key, bytes);
    } catch (err) {
      return no(`worker ${this.id} cannot stage its partition manifest: ${errorMessage(err)}`);
    }
    this.lastPreparedEpoch = request.epoch;
    return {
      vote: Vote.VOTE_YES,
      reason: '',
      workerId: this.id,
      queues,
      partitionKey: key,
      partitionSha256: createHash('sha256').update(bytes).digest('hex'),
    };
  }

  async decide(request: DecideRequest): Promise<void> {
    this.checkToken(request.leaderToken);
    for (const capture of this.captures.all()) {
      if (request.decision === Decision.DECISION_COMMIT) capture.commit(request.epoch, request.roundId);
      else if (request.decision === Decision.DECISION_ABORT) capture.abort(request.epoch, request.roundId);
    }
  }

  async restore(task: RestoreTask, emit: (progress: RestoreProgress) => void, signal: AbortSignal): Promise<void> {
    this.checkToken(task.leaderToken);
    await runRestoreTask({
      task,
      store: this.store,
      defaultAmqpUrl: this.options.config.amqpUrl,
      workerId: this.id,
      confirmWindow: task.confirmWindow || this.options.config.confirmWindow,
      log: this.options.log.child('restore'),
      emit,
      signal,
    });
  }

  status(): WorkerStatus {
    return {
      workerId: this.id,
      generation: this.generation,
      leaderToken: this.seenToken,
      queues: this.captures.all().map((c) => c.status()),
      lastPreparedEpoch: this.lastPreparedEpoch,
    };
  }
}
