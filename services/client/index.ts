/**
 * The typed client library over the coordinator's admin API: what the tidemark CLI (and any
 * program driving checkpoints and restores) uses. Errors arrive as Tidemark error classes.
 */
import * as grpc from '@grpc/grpc-js';
import { TidemarkError, TransientError } from '../core/errors.js';
import { callUnary, clientChannelOptions, fromServiceError, isConnectFailure, readStream } from '../core/grpc.js';
import {
  CoordinatorServiceClient,
  RestoreRequest,
  type CheckpointReply,
  type CheckpointSummary,
  type RestoreEvent,
  type StatusReply,
} from '../gen/tidemark/v1/admin.js';
import type { CheckpointManifest } from '../gen/tidemark/v1/store.js';

export { RoundOutcome } from '../gen/tidemark/v1/admin.js';
export type {
  CheckpointReply,
  CheckpointSummary,
  NameMapping,
  PlannedQueue,
  RestoreDone,
  RestoreEvent,
  RestorePlan,
  RestoreRequest,
  RoundInfo,
  StatusReply,
  WorkerInfo,
} from '../gen/tidemark/v1/admin.js';
export type { RestoreProgress } from '../gen/tidemark/v1/worker.js';
export type {
  Binding,
  CheckpointManifest,
  QueueCheckpoint,
  QueueDefinition,
  SegmentRef,
} from '../gen/tidemark/v1/store.js';

export interface TidemarkClientOptions {
  /** Deadline of each call except `checkpoint(true)` and `restore`. @default 30000 */
  deadlineMs?: number;
}

/** A waited checkpoint runs a whole 2PC round; it gets at least this long. */
const waitedCheckpointDeadlineMs = 10 * 60_000;

export class TidemarkClient {
  private readonly client: CoordinatorServiceClient;
  private readonly deadlineMs: number;

  /** @param address the coordinator's host:port, e.g. localhost:7700 */
  constructor(
    readonly address: string,
    options: TidemarkClientOptions = {},
  ) {
    this.deadlineMs = options.deadlineMs ?? 30_000;
    this.client = new CoordinatorServiceClient(address, grpc.credentials.createInsecure(), clientChannelOptions);
  }

  /** Starts a checkpoint round; with `wait`, resolves once it is committed or aborted. */
  checkpoint(wait: boolean): Promise<CheckpointReply> {
    const deadlineMs = wait ? Math.max(this.deadlineMs, waitedCheckpointDeadlineMs) : this.deadlineMs;
    return this.call(callUnary(this.client.checkpoint.bind(this.client), { wait }, this.options(deadlineMs)));
  }

  /** Committed checkpoints, as listed from the store. */
  async listCheckpoints(): Promise<CheckpointSummary[]> {
    const reply = await this.call(callUnary(this.client.listCheckpoints.bind(this.client), {}, this.options()));
    return reply.checkpoints;
  }

  /** One checkpoint's manifest; `id` is an epoch number or "latest". */
  getCheckpoint(id: string): Promise<CheckpointManifest> {
    return this.call(callUnary(this.client.getCheckpoint.bind(this.client), { id }, this.options()));
  }

  status(): Promise<StatusReply> {
    return this.call(callUnary(this.client.status.bind(this.client), {}, this.options()));
  }

  /**
   * Plans and (unless dry run) runs a restore, yielding the plan, progress and the final summary.
   * No deadline: a restore takes as long as it takes. Aborting `signal` cancels it on the
   * coordinator; the iteration then throws the signal's reason.
   */
  async *restore(request: Partial<RestoreRequest>, signal?: AbortSignal): AsyncGenerator<RestoreEvent, void, undefined> {
    if (signal?.aborted) throw signal.reason;
    const stream = this.client.restore(RestoreRequest.fromPartial(request));
    yield* readStream(stream, {
      what: this.what(),
      signal,
      mapError: (err) => this.mapError(fromServiceError(err, this.what())),
    });
  }

  close(): void {
    this.client.close();
  }

  private options(deadlineMs = this.deadlineMs) {
    return { deadlineMs, what: this.what() };
  }

  private what(): string {
    return `coordinator at ${this.address}`;
  }

  private async call<T>(pending: Promise<T>): Promise<T> {
    try {
      return await pending;
    } catch (err) {
      throw err instanceof TidemarkError ? this.mapError(err) : err;
    }
  }

  /** A coordinator that cannot be reached gets a message telling the operator how to start one. */
  private mapError(err: TidemarkError): TidemarkError {
    if (!isConnectFailure(err)) return err;
    return new TransientError(
      `cannot reach the coordinator at ${this.address}: start one with "tidemark cluster up" or "tidemark coordinator", or set TIDEMARK_COORDINATOR / --coordinator`,
      { cause: err.cause },
    );
  }
}
