/**
 * One restore running on the leader: its queues go to the workers one at a time each, at most
 * the plan's concurrency at once; a queue whose worker fails is tried again on a live worker from
 * its recorded progress; watchers hear the plan, every queue's progress and the end.
 */
import { randomBytes } from 'node:crypto';
import type { CheckpointManifest, SegmentRef } from '../gen/tidemark/v1/store.js';
import type { RestoreDone, RestoreEvent, RestorePlan, RestoreRequest } from '../gen/tidemark/v1/admin.js';
import type { QueueRestore, RestoreProgress } from '../gen/tidemark/v1/worker.js';
import {
  type Clock,
  errorMessage,
  forEachLimited,
  LeadershipLostError,
  type Logger,
  type QueueProgress,
  rendezvousOwner,
  type RestoreRecord,
  type RestoreState,
  type RestoreStateStore,
  StaleLeaderError,
  TransientError,
  type WorkerClient,
  RestoreCancelledError,
} from '../core/index.js';
import type { Coordinator } from './coordinator.js';
import { RestoreInterruptedError } from './errors.js';
import type { PlannedRestore } from './restore-plan.js';
import type { RestoreMode } from './restore-preflight.js';

/** Tries of one queue when its worker fails (dies, is unreachable); each resumes where the last stopped. */
const QUEUE_ATTEMPTS = 6;

/** One queue of a restore job. */
export interface JobQueue {
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

export type Listener = (event: RestoreEvent) => void;

/** What a job uses of the restore service that runs it (RestoreService, restore-coordinator.ts). */
export interface RestoreJobServices {
  readonly coordinator: Coordinator;
  readonly state: RestoreStateStore;
  readonly log: Logger;
  /** Times the job and each queue's publishing (for the measured rate). */
  readonly clock: Clock;
}

/** A restore running on this coordinator. */
export class RestoreJob {
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
    private readonly services: RestoreJobServices,
    /** The target broker with its credentials ('' for the workers' own broker): sent to workers, never stored. */
    private readonly targetUrl = '',
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
    this.controller.abort(new RestoreCancelledError('restore cancelled'));
  }

  /** Set when the leader stopped the job to hand it over: watchers are told to follow it elsewhere. */
  handedOver = false;

  /**
   * Stops the job as a deposed leader would: it ends 'interrupted', for the next leader to
   * resume. Its watchers get no 'done' event (see RestoreService.watch).
   */
  interrupt(reason: string): void {
    this.deposed = true;
    this.handedOver = true;
    this.controller.abort(new RestoreInterruptedError(reason));
  }

  private emit(event: RestoreEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  private progress(q: JobQueue, progress: RestoreProgress): void {
    q.progress = progress;
    this.emit({ event: { $case: 'progress', value: progress } });
  }

  async run(): Promise<void> {
    const { state, log, clock } = this.services;
    const startedAt = clock.now();
    const pending = this.queues.filter((q) => !q.finished?.ok);
    const slots = Math.max(1, Math.min(this.plan.concurrency, pending.length));
    await forEachLimited(pending, slots, (q) => this.runQueue(q, slots), this.controller.signal);
    const failed = this.queues.filter((q) => q.finished && !q.finished.ok).length;
    const unfinished = this.queues.some((q) => !q.finished);
    const outcome: RestoreState = this.cancelled ? 'cancelled' : this.deposed || unfinished ? 'interrupted' : failed > 0 ? 'failed' : 'done';
    await state.setState(this.id, outcome).catch((err) => log.warn('recording a restore\'s state failed', { restoreId: this.id, state: outcome, err: errorMessage(err) }));
    this.services.coordinator.metrics.restoreFinished(outcome);
    const busy = this.queues.reduce((n, q) => n + q.busyMs, 0);
    const published = this.queues.reduce((n, q) => n + q.publishedThisRun, 0);
    if (outcome === 'done' && busy > 0 && published >= 1_000) await state.recordRate((published * 1000) / busy).catch(() => {});
    const done: RestoreDone = {
      restoreId: this.id,
      messages: this.queues.reduce((n, q) => n + (q.finished?.ok ? q.progress.confirmed : 0), 0),
      queues: this.queues.length,
      failedQueues: failed,
      durationMs: clock.now() - startedAt,
      state: outcome,
    };
    const finished = this.queues.filter((q) => q.finished?.ok).length;
    log.info('restore ended', { restoreId: this.id, state: outcome, messages: done.messages, queues: done.queues, finishedQueues: finished, failedQueues: failed, durationMs: done.durationMs });
    this.report(done);
  }

  /** Ends the job with `done`, telling every watcher. */
  report(done: RestoreDone): void {
    this.doneEvent = done;
    if (!this.handedOver) this.emit({ event: { $case: 'done', value: done } });
    this.listeners.clear();
    this.finish(done);
  }

  /** Restores one queue, on another live worker (from the recorded prefix) if its worker fails. */
  private async runQueue(q: JobQueue, slots: number): Promise<void> {
    const { coordinator, state, log, clock } = this.services;
    const source = q.planned.entry.definition!;
    for (let attempt = 1; attempt <= QUEUE_ATTEMPTS && !this.controller.signal.aborted; attempt += 1) {
      if (!coordinator.isLeader) {
        this.deposed = true;
        this.controller.abort(new LeadershipLostError('this coordinator is no longer the leader'));
        return;
      }
      const workers = await coordinator.liveWorkers();
      const workerId = workers.has(q.planned.workerId) ? q.planned.workerId : rendezvousOwner(q.key, [...workers.keys()].sort());
      if (!workerId) {
        log.warn('no live worker for a restored queue; waiting', { restoreId: this.id, vhost: source.vhost, queue: source.name, attempt });
        await sleep(1_000 * attempt, this.controller.signal);
        continue;
      }
      // Only this attempt's worker may record the queue's progress from now on.
      const assignment = `${workerId}/${randomBytes(6).toString('hex')}`;
      await state.assign(this.id, q.key, assignment);
      const recorded = (await state.progress(this.id)).get(q.key) ?? { started: false, confirmed: 0, offset: -1 };
      const item = { ...this.queueTask(q, recorded, slots), assignment };
      const began = clock.now();
      try {
        const final = await this.runOnWorker(q, workers.get(workerId)!, workerId, item);
        q.busyMs += clock.now() - began;
        q.publishedThisRun += final.confirmed - final.skipped;
        q.finished = { ok: final.error === '', error: final.error };
        await state.markFinished(this.id, q.key, q.finished).catch((err) => log.warn('recording a restored queue as finished failed', { restoreId: this.id, vhost: source.vhost, queue: source.name, err: errorMessage(err) }));
        return;
      } catch (err) {
        if (this.controller.signal.aborted) return;
        if (err instanceof StaleLeaderError) {
          this.deposed = true;
          this.controller.abort(err);
          return;
        }
        log.warn('restore of a queue stopped on its worker; resuming from its recorded progress', { restoreId: this.id, vhost: source.vhost, queue: source.name, worker: workerId, attempt, attempts: QUEUE_ATTEMPTS, err: errorMessage(err) });
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
      startOffset: q.planned.span.startOffset,
      cutOffset: entry.cutOffset,
      messages: q.planned.span.messages,
      bodyBytes: q.planned.span.bodyBytes,
      possiblyAcked: q.planned.span.possiblyAcked,
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
      // Set per attempt by runQueue.
      assignment: '',
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
        targetAmqpUrl: this.targetUrl,
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
    throw new TransientError(`worker ${workerId} ended the task without finishing ${q.key.replace('\u0000', '/')}`);
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
