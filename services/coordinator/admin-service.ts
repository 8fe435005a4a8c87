/** The coordinator's admin API handlers (CoordinatorService). */
import type * as grpc from '@grpc/grpc-js';
import { serverStream, unary } from '../core/index.js';
import { RoundOutcome, type CoordinatorServiceServer } from '../gen/tidemark/v1/admin.js';
import type { Coordinator } from './coordinator.js';
import { RestoreService } from './restore-coordinator.js';
import { runDrill } from './restore-drill.js';
import { verifyCheckpoint } from './verify.js';
import { roundOutcome } from './admin-enums.js';

export function adminHandlers(coordinator: Coordinator): CoordinatorServiceServer & grpc.UntypedServiceImplementation {
  const restores = new RestoreService(coordinator);
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
    listCheckpoints: unary(async () => {
      const epochs = await coordinator.catalog.epochs();
      const checkpoints = await Promise.all(
        epochs.map(async (epoch) => {
          const m = await coordinator.catalog.get(epoch);
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
      return { checkpoints };
    }),
    getCheckpoint: unary(async (request) => coordinator.catalog.resolve(request.id)),
    status: unary(async () => coordinator.status()),
    restore: serverStream(async (request, emit, call) => restores.start(request, emit, call.signal)),
    resumeRestore: serverStream(async (request, emit, call) => restores.resume(request.restoreId, emit, call.signal)),
    cancelRestore: unary(async (request) => ({ state: await restores.cancel(request.restoreId) })),
    listRestores: unary(async () => ({ restores: await restores.list() })),
    verify: serverStream(async (request, emit, call) => {
      const { store } = coordinator.restoreParts;
      await verifyCheckpoint(coordinator.catalog, store, request.checkpoint, { full: request.full, signal: call.signal, emit });
    }),
    restoreDrill: serverStream(async (request, emit, call) => runDrill(coordinator, restores, request, emit, call.signal)),
  };
}
