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
import type { CheckpointManifest } from '../gen/tidemark/v1/store.js';
import type { PlannedQueue, RestorePlan, RestoreRequest, RestoreSummary } from '../gen/tidemark/v1/admin.js';
import {
  type Clock,
  ConfigError,
  errorMessage,
  FailedPreconditionError,
  type Logger,
  NotFoundError,
  parseAtTime,
  queueKey,
  type QueueProgress,
  type RestoreRecord,
  RestoreStateStore,
  storedSegmentCount,
  TransientError,
} from '../core/index.js';
import type { Coordinator } from './coordinator.js';
import { parseBindingsMode, planRestore } from './restore-plan.js';
import { DEFAULT_QUEUE_RATE, estimateRestoreMs } from './restore-estimate.js';
import { parseRestoreMode, preflightTargets } from './restore-preflight.js';
import { RestoreJob, type JobQueue, type Listener } from './restore-job.js';
import { hasPassword, withoutPassword } from '../core/amqp/index.js';
import { type AdminCaller, requireRole } from './admin-auth.js';
import { RestoreTargets } from './restore-targets.js';
import { checkRestoreLimits } from './admin-limits.js';

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
      throw new ConfigError('--target-amqp must be an amqp:// or amqps:// URL, e.g. amqp://user@host:5672; nothing was restored');
    }
  }
  if (request.targetAmqpUrl !== '' && request.target !== '') {
    throw new ConfigError('a restore takes either a configured target (--target) or a raw broker URL (--target-amqp), not both; nothing was restored');
  }
  checkRestoreLimits(request);
}

/** How a resumed restore gets the credentials of its target back (docs/SECURITY.md#restore-targets). */
export interface ResumeOptions {
  /** Who asked; undefined for the coordinator's own resumes (a new leader taking over). */
  caller?: AdminCaller;
  /** The raw target URL again, with its password, for a restore whose password no coordinator holds. */
  targetAmqpUrl?: string;
}

/** The leader's restores: start, resume, cancel, list. */
export class RestoreService {
  readonly state: RestoreStateStore;
  readonly log: Logger;
  readonly clock: Clock;
  private readonly running = new Map<string, Promise<RestoreJob>>();
  /**
   * Raw target URLs with their passwords, by restore id: kept in this process's memory only
   * (Redis holds the URL without its password), so that a cancelled or interrupted restore can be
   * resumed here. After a failover the next leader does not have them: the caller resumes such a
   * restore with the URL's password again.
   */
  private readonly rawCredentials = new Map<string, string>();

  constructor(
    readonly coordinator: Coordinator,
    readonly targets: RestoreTargets = RestoreTargets.none(),
  ) {
    const { redis, config, log } = coordinator.restoreParts;
    this.clock = coordinator.clock;
    this.state = new RestoreStateStore(redis, config.namespace);
    this.log = log.child('restore');
    // A new leader takes over the restores its predecessor left running.
    coordinator.whenLeader(() => void this.resumeLeftRunning());
    // A leader that stops leaves its restores 'interrupted' for the next one to resume.
    coordinator.whenStopping(() => this.interruptAll(`coordinator ${coordinator.id} is stopping`));
  }

  /** Interrupts every running restore; resolves when each has recorded its state. */
  private async interruptAll(reason: string): Promise<void> {
    await Promise.allSettled(
      [...this.running.values()].map(async (registered) => {
        const job = await registered;
        job.interrupt(reason);
        await job.finished;
      }),
    );
  }

  /** Plans and (unless a dry run) starts a restore; `emit` hears its events until it ends or `signal` fires. */
  async start(request: RestoreRequest, emit: Listener, signal: AbortSignal): Promise<void> {
    checkRestoreRequest(request);
    // Workers only take tasks carrying the current leader's token.
    if (!request.dryRun) this.requireLeader('the restore');
    const targetUrl = request.target ? this.targets.url(request.target) : request.targetAmqpUrl;
    const manifest = await this.resolve(request);
    const id = `r${manifest.epoch}-${randomBytes(4).toString('hex')}`;
    // What Redis keeps: the target's name, or a raw URL without its password.
    const stored: RestoreRequest = { ...request, checkpoint: String(manifest.epoch), at: '', targetAmqpUrl: request.targetAmqpUrl && withoutPassword(request.targetAmqpUrl) };
    const job = await this.prepare(id, stored, manifest, new Map(), this.clock.now(), targetUrl);
    job.record.rawTargetPassword = hasPassword(request.targetAmqpUrl);
    if (request.dryRun) {
      emit({ event: { $case: 'plan', value: job.plan } });
      // The stream always ends with a done event, so a reader can tell complete from cut off.
      emit({ event: { $case: 'done', value: { restoreId: id, messages: 0, queues: job.queues.length, failedQueues: 0, durationMs: 0, state: 'done' } } });
      return;
    }
    this.refuseConflicts(job);
    if (job.record.rawTargetPassword) this.rawCredentials.set(id, request.targetAmqpUrl);
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
  async resume(id: string, emit: Listener, signal: AbortSignal, options: ResumeOptions = {}): Promise<void> {
    let job = this.running.get(id);
    if (!job) {
      const starting = this.reload(id, options);
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
  private async reload(id: string, options: ResumeOptions): Promise<RestoreJob> {
    const record = await this.state.get(id);
    if (!record) throw new NotFoundError(`restore ${id} is not known: see "tidemark restore list" (finished restores are kept for 7 days)`);
    const request = record.request as unknown as RestoreRequest;
    let targetUrl = '';
    if (record.state !== 'done') {
      this.requireLeader('the resume');
      // Publishing again is what the original request needed: raw URLs and append are the admin's.
      if (request.targetAmqpUrl) requireRole(options.caller, { role: 'admin', what: `resuming restore ${id}, which publishes into a raw broker URL` });
      if (request.append || request.mode === 'append') requireRole(options.caller, { role: 'admin', what: `resuming restore ${id}, which appends into existing queues` });
      try {
        targetUrl = this.resumeTargetUrl(record, options.targetAmqpUrl);
      } catch (err) {
        // A restore no coordinator can run now must not look running: it waits for a resume.
        if (record.state === 'running') await this.state.setState(id, 'interrupted').catch(() => {});
        throw err;
      }
    }
    const job = await this.load(record, targetUrl);
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
      throw this.coordinator.notLeader(`did not take ${what}; nothing was restored`);
    }
  }

  private async resolve(request: RestoreRequest): Promise<CheckpointManifest> {
    const catalog = this.coordinator.catalog;
    if (request.at) return catalog.at(parseAtTime(request.at, this.clock.now()));
    return catalog.resolve(request.checkpoint || 'latest');
  }

  /**
   * The URL a resumed restore publishes to: its configured target's (credentials read again), its
   * raw URL with the password this coordinator kept or the caller sent again, or '' (the source).
   */
  private resumeTargetUrl(record: RestoreRecord, supplied: string | undefined): string {
    const request = record.request as unknown as RestoreRequest;
    if (request.target) return this.targets.url(request.target);
    if (supplied) {
      let same = false;
      try {
        same = request.targetAmqpUrl !== '' && withoutPassword(supplied) === request.targetAmqpUrl;
      } catch {
        // Not a URL: refused below, without echoing it.
      }
      if (!same) throw new ConfigError(`the --target-amqp URL given does not name the broker restore ${record.id} publishes into (${request.targetAmqpUrl || 'the source broker'}); nothing was restored`);
      this.rawCredentials.set(record.id, supplied);
      return supplied;
    }
    if (!request.targetAmqpUrl) return '';
    const kept = this.rawCredentials.get(record.id);
    if (kept) return kept;
    if (!record.rawTargetPassword) return request.targetAmqpUrl;
    throw new FailedPreconditionError(
      `restore ${record.id} publishes into ${request.targetAmqpUrl}, whose password only the coordinator that started it kept (in memory, never in Redis), ` +
        `and this coordinator does not have it: resume it with "tidemark restore resume ${record.id} --target-amqp ${request.targetAmqpUrl}" and the password in ` +
        'TIDEMARK_TARGET_AMQP_PASSWORD or TIDEMARK_TARGET_AMQP_PASSWORD_FILE; nothing was restored',
    );
  }

  /** Rebuilds a stored restore; queues that failed are tried again. */
  private async load(record: RestoreRecord, targetUrl: string): Promise<RestoreJob> {
    const request = record.request as unknown as RestoreRequest;
    const manifest = await this.coordinator.catalog.resolve(String(record.checkpoint));
    const progress = await this.state.progress(record.id);
    for (const [key, p] of progress) {
      if (p.finished && !p.finished.ok) {
        await this.state.clearFinished(record.id, key);
        p.finished = undefined;
      }
    }
    const job = await this.prepare(record.id, request, manifest, progress, record.createdAtMs, targetUrl);
    job.record.rawTargetPassword = record.rawTargetPassword;
    return job;
  }

  /** Plans a restore (new or resumed), checks its targets and estimates its duration. */
  private async prepare(
    id: string,
    request: RestoreRequest,
    manifest: CheckpointManifest,
    progress: Map<string, QueueProgress>,
    createdAtMs: number,
    /** The target broker's URL with its credentials, '' for the source broker; never stored. */
    targetUrl: string,
  ): Promise<RestoreJob> {
    const { config } = this.coordinator.restoreParts;
    const workers = await this.coordinator.liveWorkers();
    if (workers.size === 0) {
      throw new FailedPreconditionError('no live workers to run the restore: start at least one "tidemark worker" (see "tidemark status"); nothing was restored');
    }
    const mode = parseRestoreMode(request.mode, request.append);
    const planned = planRestore(
      manifest,
      {
        queues: request.queues,
        prefix: request.prefix,
        map: request.map,
        targetVhost: request.targetVhost,
        vhostMap: request.vhostMap,
        bindings: parseBindingsMode(request.bindings),
        history: request.history,
        namespace: config.namespace,
      },
      [...workers.keys()].sort(),
    );
    const catalog = this.coordinator.catalog;
    const segments = await Promise.all(planned.map((p) => catalog.segmentsOf(p.entry, p.span.startOffset)));
    const keys = planned.map((p) => queueKey(p.entry.definition!.vhost, p.entry.definition!.name));
    const checks = await preflightTargets(
      targetUrl || config.amqpUrl,
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
          total: p.span.messages,
          done: recorded?.finished !== undefined,
          error: recorded?.finished?.error ?? '',
          bodyBytes: 0,
          skipped: 0,
        },
      };
    });
    const measured = await this.state.measuredRate().catch(() => undefined);
    const remaining = queues.filter((q) => !q.finished?.ok).map((q) => ({ messages: q.planned.span.messages - q.progress.confirmed, bodyBytes: q.planned.span.bodyBytes }));
    const plannedQueues: PlannedQueue[] = queues.map((q, i) => ({
      sourceVhost: q.progress.sourceVhost,
      sourceQueue: q.progress.sourceQueue,
      targetVhost: q.planned.targetVhost,
      targetQueue: q.planned.targetName,
      type: q.planned.entry.definition!.type,
      messages: q.planned.span.messages,
      bodyBytes: q.planned.span.bodyBytes,
      segments: storedSegmentCount(q.segments),
      workerId: q.planned.workerId,
      bind: q.planned.bind,
      alreadyConfirmed: q.progress.confirmed,
      finished: q.finished?.ok ?? false,
      targetExists: checks[i].exists,
      conflict: checks[i].conflict,
      incomplete: q.planned.entry.incomplete,
      restoreFrom: q.planned.span.from,
      restoreFromReason: q.planned.span.reason,
      possiblyAcked: q.planned.span.possiblyAcked,
      predating: q.planned.span.from === 'contents' ? q.planned.entry.predating : 0,
      outsideCut: q.planned.entry.outsideCut,
    }));
    const plan: RestorePlan = {
      restoreId: id,
      checkpoint: manifest.epoch,
      dryRun: request.dryRun,
      messages: planned.reduce((n, p) => n + p.span.messages, 0),
      bodyBytes: planned.reduce((n, p) => n + p.span.bodyBytes, 0),
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
      updatedAtMs: this.clock.now(),
      queues: queues.length,
      messages: plan.messages,
    };
    return new RestoreJob(record, plan, queues, request, mode, manifest, this, targetUrl);
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
      .catch((err) => this.log.error('restore stopped', { restoreId: job.id, err: errorMessage(err) }))
      .finally(() => {
        if (this.running.get(job.id) === registered) this.running.delete(job.id);
        // A finished restore is never resumed: its password need not be kept.
        void job.finished.then((done) => done.state === 'done' && this.rawCredentials.delete(job.id));
      });
  }

  /** Relays a job's events until it ends or the watcher leaves (which does not stop the job). */
  private async watch(job: RestoreJob, emit: Listener, signal: AbortSignal): Promise<void> {
    const unwatch = job.watch(emit);
    try {
      await Promise.race([job.finished, new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))]);
      if (job.handedOver) {
        // Retryable: `tidemark restore` reconnects and follows the restore on the next leader.
        throw new TransientError(`coordinator ${this.coordinator.id} is stopping; the next leader resumes restore ${job.id}: follow it with "tidemark restore resume ${job.id}"`);
      }
    } finally {
      unwatch();
    }
  }

  /** Resumes, in the background, every restore a previous leader left running. */
  private async resumeLeftRunning(): Promise<void> {
    const records = await this.state.list().catch((err) => {
      this.log.warn('listing restores to resume failed', { err: errorMessage(err) });
      return [];
    });
    for (const record of records) {
      if ((record.state !== 'running' && record.state !== 'interrupted') || this.running.has(record.id)) continue;
      this.log.info('resuming a restore left by a previous leader', { restoreId: record.id, state: record.state });
      const controller = new AbortController();
      void this.resume(record.id, () => {}, controller.signal).catch((err) => this.log.warn('resuming a restore failed', { restoreId: record.id, err: errorMessage(err) }));
    }
  }
}
