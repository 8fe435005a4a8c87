/**
 * Restores as durable jobs run by the leader: resolve the checkpoint, plan, check every target
 * before anything is published, then hand the queues to the workers one at a time each, at most
 * `concurrency` at once, and relay their progress to whoever watches.
 *
 * A restore outlives the call that started it. Its record and every queue's confirmed prefix are
 * in Redis (restore-state.ts), so:
 * - a worker that dies mid-queue: the queue is retried on a live worker, from its recorded prefix;
 * - the leader that dies (or is deposed): the next leader resumes every restore left running;
 * - the CLI that dies: the restore goes on; `tidemark restore resume ID` watches it again.
 * Cancelling (Ctrl-C in the CLI, CancelRestore) stops it; `restore resume` continues it later.
 */
import { randomBytes } from 'node:crypto';
import type { CheckpointManifest, SegmentRef } from '../gen/tidemark/v1/store.js';
import type { PlannedQueue, RestoreDone, RestoreEvent, RestorePlan, RestoreRequest, RestoreSummary } from '../gen/tidemark/v1/admin.js';
import type { QueueRestore, RestoreProgress } from '../gen/tidemark/v1/worker.js';
import { ConfigError, FailedPreconditionError, NotFoundError, StaleLeaderError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { rendezvousOwner } from '../core/rendezvous.js';
import { RestoreStateStore, restoreQueueKey, type QueueProgress, type RestoreRecord, type RestoreState } from '../core/restore-state.js';
import { parseAtTime } from '../core/time-spec.js';
import type { WorkerClient } from '../client/worker-client.js';
import type { Coordinator } from './coordinator.js';
import { parseBindingsMode, planRestore, type PlannedRestore } from './restore-plan.js';
import { DEFAULT_QUEUE_RATE, estimateRestoreMs } from './restore-estimate.js';
import { parseRestoreMode, preflightTargets, type RestoreMode } from './restore-preflight.js';

/** Tries of one queue when its worker fails (dies, is unreachable); each resumes where the last stopped. */
const QUEUE_ATTEMPTS = 6;
/** Queues restored at once per live worker when the request does not say. */
const DEFAULT_CONCURRENCY_PER_WORKER = 4;

/**
 * Refuses a request that cannot mean anything before anything is read or published. A client
 * that names no checkpoint gets an error, never the latest one: restoring data nobody asked for
 * is worse than failing.
 */
function checkRestoreRequest(request: RestoreRequest): void {
  const checkpoint = request.checkpoint.trim();
  if (checkpoint === '' && request.at === '') {
    throw new ConfigError('a restore needs a checkpoint: an epoch number or "latest" (--checkpoint), or a time (--at); nothing was restored');
  }
  if (checkpoint !== '' && request.at !== '') {
    throw new ConfigError('a restore takes either a checkpoint id (--checkpoint) or a time (--at), not both; nothing was restored');
  }
  if (checkpoint !== '' && checkpoint.toLowerCase() !== 'latest' && !(/^\d+$/.test(checkpoint) && Number.isSafeInteger(Number(checkpoint)))) {
    throw new ConfigError(`"${request.checkpoint}" is not a checkpoint id: use an epoch number or "latest" (see "tidemark checkpoints list"); nothing was restored`);
  }
  if (request.targetAmqpUrl !== '') {
    let protocol = '';
    try {
      protocol = new URL(request.targetAmqpUrl).protocol;
    } catch {
      // The text may hold a password: it is not echoed.
    }
    if (protocol !== 'amqp:' && protocol !== 'amqps:') {
      throw new ConfigError('--target-amqp must be an amqp:// or amqps:// URL, e.g. amqp://user:password@host:5672; nothing was restored');
    }
  }
}

/** One queue of a restore job. */
interface JobQueue {
  planned: PlannedRestore;
  segments: SegmentRef[];
  key: string;
  exists: boolean;
  /** The latest progress event, replayed to a watcher that attaches later. */
  progress: RestoreProgress;
  finished?: { ok: boolean; error: string };
  /** Publishing time and messages of this run, for the measured rate. */
  busyMs: number;
  publishedThisRun: number;
}

type Listener = (event: RestoreEvent) => void;

/** A restore running on this coordinator. */
class RestoreJob {
  private readonly listeners = new Set<Listener>();
  private readonly controller = new AbortController();
  private cancelled = false;
  private deposed = false;
  readonly finished: Promise<RestoreDone>;
  private finish!: (done: RestoreDone) => void;
  private doneEvent: RestoreDone | undefined;
  /** Set for a job that only reports a restore that ended earlier. */
  ended = false;

  constructor(
    readonly record: RestoreRecord,
    readonly plan: RestorePlan,
    readonly queues: JobQueue[],
    private readonly request: RestoreRequest,
    private readonly mode: RestoreMode,
    private readonly manifest: CheckpointManifest,
    private readonly services: RestoreService,
  ) {
    this.finished = new Promise((resolve) => (this.finish = resolve));
  }

  get id(): string {
    return this.record.id;
  }

  /** Adds a watcher: it hears the plan and each queue's latest progress first, then what follows. */
  watch(listener: Listener): () => void {
    listener({ event: { $case: 'plan', value: this.plan } });
    for (const q of this.queues) if (q.progress.confirmed > 0 || q.progress.done) listener({ event: { $case: 'progress', value: q.progress } });
    if (this.doneEvent) listener({ event: { $case: 'done', value: this.doneEvent } });
    else this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  cancel(): void {
    this.cancelled = true;
    this.controller.abort(new Error('restore cancelled'));
  }

  private emit(event: RestoreEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  private progress(q: JobQueue, progress: RestoreProgress): void {
    q.progress = progress;
    this.emit({ event: { $case: 'progress', value: progress } });
  }

  async run(): Promise<void> {
    const { state, log } = this.services;
    const startedAt = Date.now();
    const pending = this.queues.filter((q) => !q.finished?.ok);
    const slots = Math.max(1, Math.min(this.plan.concurrency, pending.length));
    const next = async () => {
      for (let q = pending.shift(); q; q = pending.shift()) {
        if (this.controller.signal.aborted) return;
        await this.runQueue(q, slots);
      }
    };
    await Promise.all(Array.from({ length: slots }, next));
    const failed = this.queues.filter((q) => q.finished && !q.finished.ok).length;
    const unfinished = this.queues.some((q) => !q.finished);
    const outcome: RestoreState = this.cancelled ? 'cancelled' : this.deposed || unfinished ? 'interrupted' : failed > 0 ? 'failed' : 'done';
    await state.setState(this.id, outcome).catch((err) => log.warn(`restore ${this.id}: recording its state ${outcome} failed: ${errorMessage(err)}`));
    const busy = this.queues.reduce((n, q) => n + q.busyMs, 0);
    const published = this.queues.reduce((n, q) => n + q.publishedThisRun, 0);
    if (outcome === 'done' && busy > 0 && published >= 1_000) await state.recordRate((published * 1000) / busy).catch(() => {});
    const done: RestoreDone = {
      restoreId: this.id,
      messages: this.queues.reduce((n, q) => n + (q.finished?.ok ? q.progress.confirmed : 0), 0),
      queues: this.queues.length,
      failedQueues: failed,
      durationMs: Date.now() - startedAt,
      state: outcome,
    };
    const finished = this.queues.filter((q) => q.finished?.ok).length;
    log.info(`restore ${this.id} ${outcome}: ${done.messages} messages into ${finished}/${done.queues} queue(s)${failed ? `, ${failed} failed` : ''}`);
    this.report(done);
  }

  /** Ends the job with `done`, telling every watcher. */
  report(done: RestoreDone): void {
    this.doneEvent = done;
    this.emit({ event: { $case: 'done', value: done } });
    this.listeners.clear();
    this.finish(done);
  }

  /** Restores one queue, on another live worker (from the recorded prefix) if its worker fails. */
  private async runQueue(q: JobQueue, slots: number): Promise<void> {
    const { coordinator, state, log } = this.services;
    const source = q.planned.entry.definition!;
    for (let attempt = 1; attempt <= QUEUE_ATTEMPTS && !this.controller.signal.aborted; attempt += 1) {
      if (!coordinator.isLeader) {
        this.deposed = true;
        this.controller.abort(new Error('this coordinator is no longer the leader'));
        return;
      }
      const workers = await coordinator.liveWorkers();
      const workerId = workers.has(q.planned.workerId) ? q.planned.workerId : rendezvousOwner(q.key, [...workers.keys()].sort());
      if (!workerId) {
        log.warn(`restore ${this.id}: no live worker for ${source.vhost}/${source.name}; waiting`);
        await sleep(1_000 * attempt, this.controller.signal);
        continue;
      }
      const recorded = (await state.progress(this.id)).get(q.key) ?? { started: false, confirmed: 0, offset: -1 };
      const item = this.queueTask(q, recorded, slots);
      const began = Date.now();
      try {
        const final = await this.runOnWorker(q, workers.get(workerId)!, workerId, item);
        q.busyMs += Date.now() - began;
        q.publishedThisRun += final.confirmed - final.skipped;
        q.finished = { ok: final.error === '', error: final.error };
        await state.markFinished(this.id, q.key, q.finished).catch((err) => log.warn(`restore ${this.id}: recording ${q.key} finished failed: ${errorMessage(err)}`));
        return;
      } catch (err) {
        if (this.controller.signal.aborted) return;
        if (err instanceof StaleLeaderError) {
          this.deposed = true;
          this.controller.abort(err);
          return;
        }
        log.warn(`restore ${this.id}: ${source.vhost}/${source.name} on worker ${workerId} stopped (try ${attempt} of ${QUEUE_ATTEMPTS}), resuming from its recorded progress: ${errorMessage(err)}`);
        await sleep(500 * attempt, this.controller.signal);
      }
    }
    if (!q.finished && !this.controller.signal.aborted) {
      const error = `restore of ${source.vhost}/${source.name} stopped after ${QUEUE_ATTEMPTS} tries on failing workers; resume it with "tidemark restore resume ${this.id}"`;
      q.finished = { ok: false, error };
      this.progress(q, { ...q.progress, done: true, error });
      await state.markFinished(this.id, q.key, q.finished).catch(() => {});
    }
  }

  private queueTask(q: JobQueue, recorded: QueueProgress, slots: number): QueueRestore {
    const { entry } = q.planned;
    const origin = !this.request.noOriginHeaders;
    return {
      source: entry.definition,
      targetVhost: q.planned.targetVhost,
      targetName: q.planned.targetName,
      startOffset: entry.startOffset,
      cutOffset: entry.cutOffset,
      messages: entry.messages,
      bodyBytes: entry.bodyBytes,
      segments: q.segments,
      // Appending into a queue that exists keeps its own declaration.
      recreate: !(this.mode === 'append' && q.exists),
      bind: q.planned.bind,
      append: this.mode === 'append',
      resumeCount: recorded.confirmed,
      resumeAfterOffset: recorded.offset,
      resumeFromTail: origin && entry.definition!.type === 'stream',
      rateLimit: this.request.rateLimit > 0 ? Math.max(1, Math.floor(this.request.rateLimit / slots)) : 0,
      started: recorded.started,
    };
  }

  /** One try on one worker; throws when the worker's stream breaks before the queue finished. */
  private async runOnWorker(q: JobQueue, client: WorkerClient, workerId: string, item: QueueRestore): Promise<RestoreProgress> {
    const { coordinator } = this.services;
    for await (const progress of client.restore(
      {
        leaderToken: coordinator.leaderToken,
        restoreId: this.id,
        checkpoint: this.manifest.epoch,
        targetAmqpUrl: this.request.targetAmqpUrl,
        queues: [item],
        exchanges: this.manifest.exchanges,
        originHeaders: !this.request.noOriginHeaders,
        confirmWindow: this.request.confirmWindow,
      },
      this.controller.signal,
    )) {
      this.progress(q, { ...progress, workerId });
      if (progress.done) return progress;
    }
    throw new Error(`worker ${workerId} ended the task without finishing ${q.key.replace('\u0000', '/')}`);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** The leader's restores: start, resume, cancel, list. */
export class RestoreService {
  readonly state: RestoreStateStore;
  readonly log: Logger;
  private readonly running = new Map<string, Promise<RestoreJob>>();

  constructor(readonly coordinator: Coordinator) {
    const { redis, config, log } = coordinator.restoreParts;
    this.state = new RestoreStateStore(redis, config.namespace);
    this.log = log.child('restore');
    // A new leader takes over the restores its predecessor left running.
    coordinator.whenLeader(() => void this.resumeLeftRunning());
  }

  /** Plans and (unless a dry run) starts a restore; `emit` hears its events until it ends or `signal` fires. */
  async start(request: RestoreRequest, emit: Listener, signal: AbortSignal): Promise<void> {
    checkRestoreRequest(request);
    // Workers only take tasks carrying the current leader's token.
    if (!request.dryRun) this.requireLeader('the restore');
    const manifest = await this.resolve(request);
    const id = `r${manifest.epoch}-${randomBytes(4).toString('hex')}`;
    const stored: RestoreRequest = { ...request, checkpoint: String(manifest.epoch), at: '' };
    const job = await this.prepare(id, stored, manifest, new Map(), Date.now());
    if (request.dryRun) {
      emit({ event: { $case: 'plan', value: job.plan } });
      // The stream always ends with a done event, so a reader can tell complete from cut off.
      emit({ event: { $case: 'done', value: { restoreId: id, messages: 0, queues: job.queues.length, failedQueues: 0, durationMs: 0, state: 'done' } } });
      return;
    }
    this.refuseConflicts(job);
    await this.state.create(job.record);
    const started = Promise.resolve(job);
    this.running.set(id, started);
    this.launch(job, started);
    await this.watch(job, emit, signal);
  }

  /**
   * Watches a restore, resuming it first unless it is running here already. The job is
   * registered before anything is awaited, so two resumes at once (the CLI's and the new leader's
   * own) share one job rather than publish twice.
   */
  async resume(id: string, emit: Listener, signal: AbortSignal): Promise<void> {
    let job = this.running.get(id);
    if (!job) {
      const starting = this.reload(id);
      this.running.set(id, starting);
      job = starting;
      starting.then(
        (started) => {
          if (started.ended) this.running.delete(id);
          else this.launch(started, starting);
        },
        () => this.running.delete(id),
      );
    }
    return this.watch(await job, emit, signal);
  }

  /** A stored restore as a job: a finished one only reports how it ended. */
  private async reload(id: string): Promise<RestoreJob> {
    const record = await this.state.get(id);
    if (!record) throw new NotFoundError(`restore ${id} is not known: see "tidemark restore list" (finished restores are kept for 7 days)`);
    if (record.state !== 'done') this.requireLeader('the resume');
    const job = await this.load(record);
    if (record.state === 'done') {
      job.ended = true;
      job.report({ restoreId: id, messages: job.plan.messages, queues: job.queues.length, failedQueues: 0, durationMs: 0, state: 'done' });
      return job;
    }
    this.refuseConflicts(job);
    await this.state.setState(id, 'running');
    return job;
  }

  async cancel(id: string): Promise<string> {
    const running = this.running.get(id);
    if (running) {
      const job = await running;
      job.cancel();
      return (await job.finished).state;
    }
    const record = await this.state.get(id);
    if (!record) throw new NotFoundError(`restore ${id} is not known: see "tidemark restore list"`);
    if (record.state !== 'running' && record.state !== 'interrupted') return record.state;
    this.requireLeader('the cancel');
    await this.state.setState(id, 'cancelled');
    return 'cancelled';
  }

  async list(): Promise<RestoreSummary[]> {
    const records = await this.state.list();
    return Promise.all(
      records.map(async (r) => {
        const progress = [...(await this.state.progress(r.id)).values()];
        return {
          restoreId: r.id,
          checkpoint: r.checkpoint,
          state: this.running.has(r.id) ? 'running' : r.state,
          createdAtMs: r.createdAtMs,
          updatedAtMs: r.updatedAtMs,
          queues: r.queues,
          doneQueues: progress.filter((p) => p.finished?.ok).length,
          failedQueues: progress.filter((p) => p.finished && !p.finished.ok).length,
          messages: r.messages,
          confirmed: progress.reduce((n, p) => n + p.confirmed, 0),
        };
      }),
    );
  }

  requireLeader(what: string): void {
    if (!this.coordinator.isLeader) {
      throw new FailedPreconditionError(`coordinator ${this.coordinator.id} is a standby: send ${what} to the leader (see "tidemark status"); nothing was restored`);
    }
  }

  private async resolve(request: RestoreRequest): Promise<CheckpointManifest> {
    const catalog = this.coordinator.catalog;
    if (request.at) return catalog.at(parseAtTime(request.at, Date.now()));
    return catalog.resolve(request.checkpoint || 'latest');
  }

  /** Rebuilds a stored restore; queues that failed are tried again. */
  private async load(record: RestoreRecord): Promise<RestoreJob> {
    const request = record.request as unknown as RestoreRequest;
    const manifest = await this.coordinator.catalog.resolve(String(record.checkpoint));
    const progress = await this.state.progress(record.id);
    for (const [key, p] of progress) {
      if (p.finished && !p.finished.ok) {
        await this.state.clearFinished(record.id, key);
        p.finished = undefined;
      }
    }
    return this.prepare(record.id, request, manifest, progress, record.createdAtMs);
  }

  /** Plans a restore (new or resumed), checks its targets and estimates its duration. */
  private async prepare(id: string, request: RestoreRequest, manifest: CheckpointManifest, progress: Map<string, QueueProgress>, createdAtMs: number): Promise<RestoreJob> {
    const { config } = this.coordinator.restoreParts;
    const workers = await this.coordinator.liveWorkers();
    if (workers.size === 0) {
      throw new FailedPreconditionError('no live workers to run the restore: start at least one "tidemark worker" (see "tidemark status"); nothing was restored');
    }
    const mode = parseRestoreMode(request.mode, request.append);
    const planned = planRestore(
      manifest,
      { queues: request.queues, prefix: request.prefix, map: request.map, targetVhost: request.targetVhost, vhostMap: request.vhostMap, bindings: parseBindingsMode(request.bindings) },
      [...workers.keys()].sort(),
    );
    const catalog = this.coordinator.catalog;
    const segments = await Promise.all(planned.map((p) => catalog.segmentsOf(p.entry)));
    const keys = planned.map((p) => restoreQueueKey(p.entry.definition!.vhost, p.entry.definition!.name));
    const checks = await preflightTargets(
      request.targetAmqpUrl || config.amqpUrl,
      planned.map((p, i) => ({ vhost: p.targetVhost, name: p.targetName, definition: p.entry.definition!, started: progress.get(keys[i])?.started ?? false })),
      mode,
    );
    const concurrency = request.concurrency > 0 ? request.concurrency : DEFAULT_CONCURRENCY_PER_WORKER * workers.size;
    const queues: JobQueue[] = planned.map((p, i) => {
      const recorded = progress.get(keys[i]);
      const source = p.entry.definition!;
      return {
        planned: p,
        segments: segments[i],
        key: keys[i],
        exists: checks[i].exists,
        finished: recorded?.finished,
        busyMs: 0,
        publishedThisRun: 0,
        progress: {
          workerId: p.workerId,
          sourceVhost: source.vhost,
          sourceQueue: source.name,
          targetVhost: p.targetVhost,
          targetQueue: p.targetName,
          confirmed: recorded?.confirmed ?? 0,
          total: p.entry.messages,
          done: recorded?.finished !== undefined,
          error: recorded?.finished?.error ?? '',
          bodyBytes: 0,
          skipped: 0,
        },
      };
    });
    const measured = await this.state.measuredRate().catch(() => undefined);
    const remaining = queues.filter((q) => !q.finished?.ok).map((q) => ({ messages: q.planned.entry.messages - q.progress.confirmed, bodyBytes: q.planned.entry.bodyBytes }));
    const plannedQueues: PlannedQueue[] = queues.map((q, i) => ({
      sourceVhost: q.progress.sourceVhost,
      sourceQueue: q.progress.sourceQueue,
      targetVhost: q.planned.targetVhost,
      targetQueue: q.planned.targetName,
      type: q.planned.entry.definition!.type,
      messages: q.planned.entry.messages,
      bodyBytes: q.planned.entry.bodyBytes,
      segments: q.segments.length,
      workerId: q.planned.workerId,
      bind: q.planned.bind,
      alreadyConfirmed: q.progress.confirmed,
      finished: q.finished?.ok ?? false,
      targetExists: checks[i].exists,
      conflict: checks[i].conflict,
    }));
    const plan: RestorePlan = {
      restoreId: id,
      checkpoint: manifest.epoch,
      dryRun: request.dryRun,
      messages: planned.reduce((n, p) => n + p.entry.messages, 0),
      bodyBytes: planned.reduce((n, p) => n + p.entry.bodyBytes, 0),
      queues: plannedQueues,
      estimatedMs: estimateRestoreMs(remaining, { concurrency, rateLimit: request.rateLimit, perQueueRate: measured ?? DEFAULT_QUEUE_RATE }),
      estimateBasis: measured
        ? `${measured} msg/s per queue, measured by the last restore on this cluster`
        : `${DEFAULT_QUEUE_RATE} msg/s per queue, assumed (no restore measured on this cluster yet)`,
      resumed: progress.size > 0,
      mode,
      concurrency,
      rateLimit: request.rateLimit,
    };
    const record: RestoreRecord = {
      id,
      checkpoint: manifest.epoch,
      request: request as unknown as Record<string, unknown>,
      state: 'running',
      createdAtMs,
      updatedAtMs: Date.now(),
      queues: queues.length,
      messages: plan.messages,
    };
    return new RestoreJob(record, plan, queues, request, mode, manifest, this);
  }

  /** Every conflict at once, before anything is published. */
  private refuseConflicts(job: RestoreJob): void {
    const conflicts = job.plan.queues.filter((q) => q.conflict !== '' && !q.finished);
    if (conflicts.length === 0) return;
    const lines = conflicts.map((q) => `  ${q.sourceVhost}/${q.sourceQueue} -> ${q.targetVhost}/${q.targetQueue}: ${q.conflict}`);
    throw new FailedPreconditionError(`${conflicts.length} target queue(s) cannot be used in mode ${job.plan.mode}; nothing was published:\n${lines.join('\n')}`);
  }

  /** Runs a registered job in the background; it leaves the registry when it ends. */
  private launch(job: RestoreJob, registered: Promise<RestoreJob>): void {
    void job
      .run()
      .catch((err) => this.log.error(`restore ${job.id} stopped: ${errorMessage(err)}`))
      .finally(() => {
        if (this.running.get(job.id) === registered) this.running.delete(job.id);
      });
  }

  /** Relays a job's events until it ends or the watcher leaves (which does not stop the job). */
  private async watch(job: RestoreJob, emit: Listener, signal: AbortSignal): Promise<void> {
    const unwatch = job.watch(emit);
    try {
      await Promise.race([job.finished, new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))]);
    } finally {
      unwatch();
    }
  }

  /** Resumes, in the background, every restore a previous leader left running. */
  private async resumeLeftRunning(): Promise<void> {
    const records = await this.state.list().catch((err) => {
      this.log.warn(`listing restores to resume failed: ${errorMessage(err)}`);
      return [];
    });
    for (const record of records) {
      if ((record.state !== 'running' && record.state !== 'interrupted') || this.running.has(record.id)) continue;
      this.log.info(`resuming restore ${record.id}, left ${record.state} by a previous leader`);
      const controller = new AbortController();
      void this.resume(record.id, () => {}, controller.signal).catch((err) => this.log.warn(`resuming restore ${record.id} failed: ${errorMessage(err)}`));
    }
  }
}
