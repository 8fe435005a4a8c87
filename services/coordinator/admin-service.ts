/** The coordinator's admin API handlers (CoordinatorService). */
import type * as grpc from '@grpc/grpc-js';
import { type Catalog, errorMessage, FailedPreconditionError, serverStream, unary } from '../core/index.js';
import { type CheckpointSummary, RoundOutcome, type CoordinatorServiceServer } from '../gen/tidemark/v1/admin.js';
import type { Coordinator } from './coordinator.js';
import { RestoreService } from './restore-coordinator.js';
import { runDrill } from './restore-drill.js';
import { verifyCheckpoint } from './verify.js';
import { recordVerified } from './verified-marker.js';
import { roundOutcome } from './admin-enums.js';
import { callerOf } from './admin-auth.js';
import { checkDrillLimits, checkRestoreId } from './admin-limits.js';
import { RestoreTargets } from './restore-targets.js';

export interface AdminHandlerOptions {
  /** Restore targets named in configuration. @default none */
  targets?: RestoreTargets;
  /** The coordinator's one RestoreService (the status page reads it too). @default a new one */
  restores?: RestoreService;
}

export function adminHandlers(coordinator: Coordinator, options: AdminHandlerOptions = {}): CoordinatorServiceServer & grpc.UntypedServiceImplementation {
  const restores = options.restores ?? new RestoreService(coordinator, options.targets ?? RestoreTargets.none());
  return {
    checkpoint: unary(async (request) => {
      const startedAt = Date.now();
      let announce: (epoch: number) => void = () => {};
      const started = new Promise<number>((resolve) => (announce = resolve));
      const result = coordinator.startRound(announce);
      if (!request.wait) {
        const epoch = await Promise.race([started, result.then((r) => r.epoch)]);
        result.catch(() => {});
        return { epoch, outcome: RoundOutcome.ROUND_OUTCOME_PENDING, reason: '', durationMs: Date.now() - startedAt };
      }
      const done = await result;
      return {
        epoch: done.epoch,
        outcome: roundOutcome(done.outcome),
        reason: done.reason,
        durationMs: Date.now() - startedAt,
      };
    }),
    listCheckpoints: unary(async () => ({ checkpoints: await checkpointSummaries(coordinator.catalog) })),
    getCheckpoint: unary(async (request) => coordinator.catalog.resolve(request.id)),
    status: unary(async () => coordinator.status()),
    restore: serverStream(async (request, emit, call) => restores.start(request, emit, call.signal)),
    resumeRestore: serverStream(async (request, emit, call) => {
      checkRestoreId(request.restoreId);
      await restores.resume(request.restoreId, emit, call.signal, { caller: callerOf(call), targetAmqpUrl: request.targetAmqpUrl || undefined });
    }),
    cancelRestore: unary(async (request) => {
      checkRestoreId(request.restoreId);
      return { state: await restores.cancel(request.restoreId) };
    }),
    listRestores: unary(async () => ({ restores: await restores.list() })),
    verify: serverStream(async (request, emit, call) => {
      const { store, log } = coordinator.restoreParts;
      const done = await verifyCheckpoint(coordinator.catalog, store, request.checkpoint, { full: request.full, signal: call.signal, emit }).catch((err: unknown) => {
        coordinator.metrics.verified(undefined);
        throw err;
      });
      coordinator.metrics.verified(done);
      // Retention never deletes the newest checkpoint that passed (verified-marker.ts).
      if (done.problems === 0) {
        await recordVerified(store, { epoch: done.checkpoint, verifiedAtMs: Date.now(), full: done.full }).catch((err) => log.warn('checkpoint verified, but recording it for retention failed', { epoch: done.checkpoint, err: errorMessage(err) }));
      }
    }),
    pruneCheckpoints: unary(async (request) => {
      leaderOnly(coordinator, 'did not prune checkpoints');
      const report = await coordinator.pruner.prune(request.dryRun);
      return {
        dryRun: report.dryRun,
        kept: report.kept,
        deleted: report.deleted,
        segmentsDeleted: report.segmentsDeleted,
        stagedDeleted: report.stagedDeleted,
        bytesFreed: report.bytesFreed,
        sweepSkipped: report.sweepSkipped,
      };
    }),
    deleteCheckpoint: unary(async (request) => {
      leaderOnly(coordinator, `did not delete checkpoint ${request.epoch}`);
      await coordinator.pruner.delete(request.epoch);
      return { epoch: request.epoch };
    }),
    restoreDrill: serverStream(async (request, emit, call) => {
      checkDrillLimits(request);
      await runDrill(coordinator, restores, request, emit, call.signal);
    }),
    rotateKeys: unary(async () => {
      const { vault } = coordinator.restoreParts.store;
      if (!vault) {
        throw new FailedPreconditionError(`coordinator ${coordinator.id} has no master key configured, so there is nothing to rotate: set TIDEMARK_MASTER_KEY_FILE to the new key and TIDEMARK_MASTER_KEY_PREVIOUS_FILES to the old one(s), restart it, and run "tidemark keys rotate" again`);
      }
      const report = await vault.rotate();
      coordinator.restoreParts.log.info('key rotation done', { masterKeyId: report.masterKeyId, rewrapped: report.rewrapped, current: report.current, failed: report.failed.length });
      return {
        masterKeyId: report.masterKeyId,
        rewrapped: report.rewrapped,
        current: report.current,
        failed: report.failed.map((f) => ({ dataKeyId: f.id, masterKeyId: f.masterKeyId, reason: f.reason })),
      };
    }),
  };
}

/** Deleting is the leader's alone: two coordinators pruning at once would each keep its own view. */
function leaderOnly(coordinator: Coordinator, what: string): void {
  if (!coordinator.isLeader) throw coordinator.notLeader(what);
}

/** ListCheckpoints' rows, oldest first: one per visible checkpoint (the status page's timeline too). */
export async function checkpointSummaries(catalog: Catalog): Promise<CheckpointSummary[]> {
  const epochs = await catalog.epochs();
  return Promise.all(
    epochs.map(async (epoch) => {
      const m = await catalog.get(epoch);
      return {
        epoch,
        parentEpoch: m.parentEpoch,
        full: m.full,
        startedAtMs: m.startedAtMs,
        committedAtMs: m.committedAtMs,
        queues: m.queues.length,
        messages: m.messages,
        bodyBytes: m.bodyBytes,
        incompleteQueues: m.queues.filter((q) => q.incomplete.length > 0).length,
        outsideQueues: m.queues.filter((q) => q.outsideCut).length,
      };
    }),
  );
}
