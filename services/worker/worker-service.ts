/** The worker's gRPC handlers: validation at the edge, then the Worker does the work. */
import type * as grpc from '@grpc/grpc-js';
import { beforeDeadline, ConfigError, requireField, RESTORE_ID_PATTERN, serverStream, unary } from '../core/index.js';
import { Decision, type WorkerServiceServer } from '../gen/tidemark/v1/worker.js';
import type { Worker } from './worker.js';

export function workerHandlers(worker: Worker): WorkerServiceServer & grpc.UntypedServiceImplementation {
  return {
    assign: unary(async (request) => {
      requireField(request.leaderToken, 'leader_token');
      return worker.assign(request);
    }),
    prepare: unary(async (request, call) => {
      requireField(request.leaderToken, 'leader_token');
      requireField(request.epoch, 'epoch');
      requireField(request.roundId, 'round_id');
      // Answer NO with the reason (e.g. which fence was not seen) while the leader still listens.
      return worker.prepare(request, beforeDeadline(call, 500));
    }),
    decide: unary(async (request) => {
      requireField(request.leaderToken, 'leader_token');
      requireField(request.epoch, 'epoch');
      requireField(request.roundId, 'round_id');
      if (request.decision !== Decision.DECISION_COMMIT && request.decision !== Decision.DECISION_ABORT) {
        throw new ConfigError('decision must be DECISION_COMMIT or DECISION_ABORT');
      }
      await worker.decide(request);
      return {};
    }),
    restore: serverStream(async (request, emit, call) => {
      requireField(request.leaderToken, 'leader_token');
      requireField(request.restoreId, 'restore_id');
      // The restore id becomes a Redis key; the coordinator makes it `r<epoch>-<hex>`.
      if (!RESTORE_ID_PATTERN.test(request.restoreId)) throw new ConfigError('restore_id must be 1-64 letters, digits, - and _');
      if (request.confirmWindow > 65_535) throw new ConfigError(`confirm_window ${request.confirmWindow} is above the limit of 65535`);
      for (const q of request.queues) {
        if (!q.source?.name || !q.targetName) throw new ConfigError('every queue of a restore task needs a source and a target name');
        // Progress is recorded only under the leader's assignment (core/state/restore-state.ts).
        requireField(q.assignment, 'assignment of every queue of a restore task');
      }
      await worker.restore(request, emit, call.signal);
    }),
    status: unary(async () => worker.status()),
  };
}
