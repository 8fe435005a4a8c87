/**
 * Runs a restore across the workers: resolves the checkpoint, plans, hands each worker its
 * queues, and relays their progress as one event stream.
 */
import { randomBytes } from 'node:crypto';
import type { RestoreEvent, RestoreRequest } from '../gen/tidemark/v1/admin.js';
import type { QueueRestore } from '../gen/tidemark/v1/worker.js';
import { ConfigError, FailedPreconditionError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { Coordinator } from './coordinator.js';
import { parseBindingsMode, planRestore } from './restore-plan.js';

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

export async function runRestore(
  coordinator: Coordinator,
  request: RestoreRequest,
  emit: (event: RestoreEvent) => void,
  signal: AbortSignal,
  log: Logger,
): Promise<void> {
  const startedAt = Date.now();
  const catalog = coordinator.catalog;
  checkRestoreRequest(request);
  // Workers only take tasks carrying the current leader's token.
  if (!request.dryRun && !coordinator.isLeader) {
    throw new FailedPreconditionError(`coordinator ${coordinator.id} is a standby: send the restore to the leader (see "tidemark status"); nothing was restored`);
  }

  let manifest;
  if (request.at) {
    const atMs = Date.parse(request.at);
    if (Number.isNaN(atMs)) throw new ConfigError(`--at "${request.at}" is not a time: use ISO-8601, e.g. 2026-11-24T10:15:00Z`);
    manifest = await catalog.at(atMs);
  } else {
    manifest = await catalog.resolve(request.checkpoint || 'latest');
  }
  const workers = await coordinator.liveWorkers();
  if (workers.size === 0) {
    throw new FailedPreconditionError('no live workers to run the restore: start at least one "tidemark worker" (see "tidemark status"); nothing was restored');
  }
  const planned = planRestore(
    manifest,
    {
      queues: request.queues,
      prefix: request.prefix,
      map: request.map,
      targetVhost: request.targetVhost,
      bindings: parseBindingsMode(request.bindings),
    },
    [...workers.keys()].sort(),
  );
  const restoreId = `r${manifest.epoch}-${randomBytes(4).toString('hex')}`;
  // Each queue's segments, down its manifest chain: what the workers will read.
  const segments = await Promise.all(planned.map((p) => catalog.segmentsOf(p.entry)));
  emit({
    event: {
      $case: 'plan',
      value: {
        restoreId,
        checkpoint: manifest.epoch,
        dryRun: request.dryRun,
        messages: planned.reduce((n, p) => n + p.entry.messages, 0),
        bodyBytes: planned.reduce((n, p) => n + p.entry.bodyBytes, 0),
        queues: planned.map((p, i) => ({
          sourceVhost: p.entry.definition!.vhost,
          sourceQueue: p.entry.definition!.name,
          targetVhost: p.targetVhost,
          targetQueue: p.targetName,
          type: p.entry.definition!.type,
          messages: p.entry.messages,
          bodyBytes: p.entry.bodyBytes,
          segments: segments[i].length,
          workerId: p.workerId,
          bind: p.bind,
        })),
      },
    },
  });
  if (request.dryRun) {
    // The stream always ends with a done event, so a reader can tell complete from cut off.
    emit({ event: { $case: 'done', value: { restoreId, messages: 0, queues: planned.length, failedQueues: 0, durationMs: Date.now() - startedAt } } });
    return;
  }

  const tasks = new Map<string, QueueRestore[]>();
  for (const [i, p] of planned.entries()) {
    const item: QueueRestore = {
      source: p.entry.definition,
      targetVhost: p.targetVhost,
      targetName: p.targetName,
      startOffset: p.entry.startOffset,
      cutOffset: p.entry.cutOffset,
      messages: p.entry.messages,
      bodyBytes: p.entry.bodyBytes,
      segments: segments[i],
      recreate: true,
      bind: p.bind,
      append: request.append,
    };
    tasks.set(p.workerId, [...(tasks.get(p.workerId) ?? []), item]);
  }
  let restored = 0;
  let failed = 0;
  await Promise.all(
    [...tasks].map(async ([workerId, queues]) => {
      const client = workers.get(workerId)!;
      const finished = new Set<string>();
      try {
        for await (const progress of client.restore(
          {
            leaderToken: coordinator.leaderToken,
            restoreId,
            checkpoint: manifest.epoch,
            targetAmqpUrl: request.targetAmqpUrl,
            queues,
            exchanges: manifest.exchanges,
            originHeaders: !request.noOriginHeaders,
            confirmWindow: 0,
          },
          signal,
        )) {
          if (progress.done) {
            finished.add(`${progress.sourceVhost}\u0000${progress.sourceQueue}`);
            if (progress.error) failed += 1;
            else restored += progress.confirmed;
          }
          emit({ event: { $case: 'progress', value: progress } });
        }
      } catch (err) {
        log.error(`restore ${restoreId} on worker ${workerId} failed: ${errorMessage(err)}`);
        for (const q of queues) {
          if (finished.has(`${q.source!.vhost}\u0000${q.source!.name}`)) continue;
          failed += 1;
          emit({
            event: {
              $case: 'progress',
              value: {
                workerId,
                sourceVhost: q.source!.vhost,
                sourceQueue: q.source!.name,
                targetVhost: q.targetVhost,
                targetQueue: q.targetName,
                confirmed: 0,
                total: q.messages,
                done: true,
                error: `worker ${workerId} failed: ${errorMessage(err)}`,
                bodyBytes: 0,
              },
            },
          });
        }
      }
    }),
  );
  emit({ event: { $case: 'done', value: { restoreId, messages: restored, queues: planned.length, failedQueues: failed, durationMs: Date.now() - startedAt } } });
}
