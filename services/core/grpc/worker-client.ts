/**
 * The coordinator's client of one worker: promise methods with a deadline each, and the restore
 * stream as an async iterable. Errors arrive as Tidemark error classes (see grpc-status.ts). It is in
 * core because it is the worker's contract (worker.proto) seen from outside, and the coordinator
 * may import core but not the worker (docs/ARCHITECTURE.md#layers).
 */
import { callUnary, readStream } from './client.js';
import { type GrpcTls, workerChannel } from './tls.js';
import {
  WorkerServiceClient,
  type AssignReply,
  type AssignRequest,
  type DecideReply,
  type DecideRequest,
  type PrepareReply,
  type PrepareRequest,
  type RestoreProgress,
  type RestoreTask,
  type WorkerStatus,
} from '../../gen/tidemark/v1/worker.js';

export interface WorkerClientOptions {
  /** The worker's id, used in error messages. @default the address */
  workerId?: string;
  /**
   * The coordinator's certificate material (tls.ts loadGrpcTls): the worker must present a
   * certificate naming the worker name, and is shown the coordinator's. @default plaintext
   */
  tls?: GrpcTls;
}

export class WorkerClient {
  private readonly client: WorkerServiceClient;
  private readonly what: string;

  constructor(
    readonly address: string,
    options: WorkerClientOptions = {},
  ) {
    const channel = workerChannel(options.tls ?? { enabled: false });
    this.client = new WorkerServiceClient(address, channel.credentials, channel.options);
    this.what = options.workerId ? `worker ${options.workerId} at ${address}` : `worker at ${address}`;
  }

  assign(request: AssignRequest, deadlineMs: number, signal?: AbortSignal): Promise<AssignReply> {
    return callUnary(this.client.assign.bind(this.client), request, { deadlineMs, signal, what: `${this.what} (Assign)` });
  }

  prepare(request: PrepareRequest, deadlineMs: number, signal?: AbortSignal): Promise<PrepareReply> {
    return callUnary(this.client.prepare.bind(this.client), request, { deadlineMs, signal, what: `${this.what} (Prepare)` });
  }

  decide(request: DecideRequest, deadlineMs: number, signal?: AbortSignal): Promise<DecideReply> {
    return callUnary(this.client.decide.bind(this.client), request, { deadlineMs, signal, what: `${this.what} (Decide)` });
  }

  status(deadlineMs: number, signal?: AbortSignal): Promise<WorkerStatus> {
    return callUnary(this.client.status.bind(this.client), {}, { deadlineMs, signal, what: `${this.what} (Status)` });
  }

  /** Runs a restore task with no deadline; aborting `signal` cancels it on the worker. */
  async *restore(task: RestoreTask, signal?: AbortSignal): AsyncGenerator<RestoreProgress, void, undefined> {
    if (signal?.aborted) throw signal.reason;
    yield* readStream(this.client.restore(task), { what: `${this.what} (Restore)`, signal });
  }

  close(): void {
    this.client.close();
  }
}
