/**
 * The typed client library over the coordinator's admin API: what the tidemark CLI (and any
 * program driving checkpoints and restores) uses. Errors arrive as Tidemark error classes.
 */
import * as grpc from '@grpc/grpc-js';
import { callUnary, coordinatorChannel, fromServiceError, type GrpcTls, isConnectFailure, readStream, TidemarkError, TransientError } from '../core/client-side/index.js';
import {
  CoordinatorServiceClient,
  RestoreRequest,
  type CheckpointReply,
  type CheckpointSummary,
  type DrillEvent,
  type PruneReply,
  type RotateKeysReply,
  type RestoreEvent,
  type RestoreSummary,
  type StatusReply,
  type VerifyEvent,
} from '../gen/tidemark/v1/admin.js';
import type { CheckpointManifest } from '../gen/tidemark/v1/store.js';
import { followRestoreEvents, type FollowRestoreFrom, type FollowRestoreOptions } from './follow-restore.js';
import { CoordinatorRoute } from './coordinator-route.js';

export { RECONNECT_FOR_MS, type FollowRestoreFrom, type FollowRestoreOptions } from './follow-restore.js';
export { parseCoordinatorList } from './coordinator-route.js';

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
  RestoreSummary,
  DrillEvent,
  DrillQueueResult,
  DrillDone,
  VerifyEvent,
  VerifyDone,
  VerifyProblem,
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
  /**
   * TLS to the coordinator: its CA, a client certificate if any, and the name its certificate
   * must carry (loadGrpcTls(config, 'client') reads them from the configuration, as the CLI
   * does). @default plaintext
   */
  tls?: GrpcTls;
  /**
   * Bearer token sent with every call (docs/SECURITY.md#who-may-do-what); see
   * tokenFromEnvironment for TIDEMARK_TOKEN / TIDEMARK_TOKEN_FILE. @default none
   */
  token?: string;
  /**
   * Send a call a standby refused (NotLeaderError) on to the leader it names, or to the next
   * coordinator of the list; false hands the caller the NotLeaderError. @default true
   */
  followLeader?: boolean;
}

/** A waited checkpoint runs a whole 2PC round; it gets at least this long. */
const waitedCheckpointDeadlineMs = 10 * 60_000;

/**
 * A client of the coordinators' admin API. `address` is one coordinator's host:port or a
 * comma-separated list of them (leader and standbys): read calls go to whichever answers, calls
 * only the leader carries out find the leader by themselves (coordinator-route.ts,
 * docs/API.md#finding-the-leader).
 */
export class TidemarkClient {
  private readonly clients = new Map<string, CoordinatorServiceClient>();
  private readonly route: CoordinatorRoute;
  private readonly deadlineMs: number;
  private readonly tls: GrpcTls;
  private readonly metadata: () => grpc.Metadata;

  /** @param address the coordinator's host:port (e.g. localhost:7700), or a comma-separated list of them */
  constructor(
    readonly address: string,
    options: TidemarkClientOptions = {},
  ) {
    this.route = new CoordinatorRoute(address, options.followLeader ?? true);
    this.deadlineMs = options.deadlineMs ?? 30_000;
    this.tls = options.tls ?? { enabled: false };
    const token = options.token;
    this.metadata = () => {
      const metadata = new grpc.Metadata();
      if (token) metadata.set('authorization', `Bearer ${token}`);
      return metadata;
    };
  }

  /** The coordinator the next call goes to first: the one that answered last, or the leader a standby named. */
  get currentAddress(): string {
    return this.route.current;
  }

  /** Starts a checkpoint round; with `wait`, resolves once it is committed or aborted. */
  checkpoint(wait: boolean): Promise<CheckpointReply> {
    const deadlineMs = wait ? Math.max(this.deadlineMs, waitedCheckpointDeadlineMs) : this.deadlineMs;
    return this.call((client, at) => callUnary(client.checkpoint.bind(client), { wait }, this.options(at, deadlineMs)));
  }

  /** Committed checkpoints, as listed from the store. */
  /** Retention and garbage collection now; with dryRun, only what would be deleted. */
  async pruneCheckpoints(dryRun: boolean): Promise<PruneReply> {
    return this.call((client, at) => callUnary(client.pruneCheckpoints.bind(client), { dryRun }, this.options(at)));
  }

  /** Re-wraps every data key of the store with the coordinator's current master key (docs/SECURITY.md). */
  async rotateKeys(): Promise<RotateKeysReply> {
    return this.call((client, at) => callUnary(client.rotateKeys.bind(client), {}, this.options(at)));
  }

  /** Deletes one checkpoint; a FailedPreconditionError says which protection holds it. */
  async deleteCheckpoint(epoch: number): Promise<void> {
    await this.call((client, at) => callUnary(client.deleteCheckpoint.bind(client), { epoch }, this.options(at)));
  }

  async listCheckpoints(): Promise<CheckpointSummary[]> {
    const reply = await this.call((client, at) => callUnary(client.listCheckpoints.bind(client), {}, this.options(at)));
    return reply.checkpoints;
  }

  /** One checkpoint's manifest; `id` is an epoch number or "latest". */
  getCheckpoint(id: string): Promise<CheckpointManifest> {
    return this.call((client, at) => callUnary(client.getCheckpoint.bind(client), { id }, this.options(at)));
  }

  status(): Promise<StatusReply> {
    return this.call((client, at) => callUnary(client.status.bind(client), {}, this.options(at)));
  }

  /**
   * Plans and (unless dry run) starts a restore, yielding the plan, progress and the final summary.
   * No deadline: a restore takes as long as it takes. Aborting `signal` stops watching; the
   * restore goes on on the coordinator (stop it with `cancelRestore`). The iteration then throws
   * the signal's reason.
   */
  restore(request: Partial<RestoreRequest>, signal?: AbortSignal): AsyncGenerator<RestoreEvent, void, undefined> {
    return this.stream((client) => client.restore(RestoreRequest.fromPartial(request), this.metadata()), signal);
  }

  /**
   * Watches a restore by id, resuming it first if it is not running (cancelled, or cut short by a
   * crash). `targetAmqpUrl`: for a restore into a raw broker URL, that URL with its password, in
   * case the coordinator does not hold it (docs/SECURITY.md#restore-targets).
   */
  resumeRestore(restoreId: string, signal?: AbortSignal, targetAmqpUrl = ''): AsyncGenerator<RestoreEvent, void, undefined> {
    return this.stream((client) => client.resumeRestore({ restoreId, targetAmqpUrl }, this.metadata()), signal);
  }

  /**
   * Follows a restore to its end, across coordinator failures: starts one (`{ request }`, as
   * `restore`) or watches one by id (`{ restoreId }`, as `resumeRestore`), and yields its plan,
   * progress and final summary. If the stream breaks with a retryable error after the plan has
   * arrived (the coordinator crashed, its leader changed, a standby answered), the restore goes on
   * in the cluster: this reconnects to it by id with `resumeRestore` and carries on, for up to
   * `reconnectForMs` without an event, then throws a TidemarkError naming the restore. An error
   * before the plan (nothing reachable, a bad request) is thrown at once. Aborting `signal` stops
   * following, as for `restore`; the restore goes on.
   *
   * @example
   * for await (const event of client.followRestore({ request: { checkpoint: 'latest' } })) {
   *   if (event.event?.$case === 'done') console.log(event.event.value);
   * }
   */
  followRestore(from: FollowRestoreFrom, options: FollowRestoreOptions = {}): AsyncGenerator<RestoreEvent, void, undefined> {
    const { signal } = options;
    // A raw target's password goes along on reconnects: the next leader does not have it.
    const targetAmqpUrl = ('restoreId' in from ? from.targetAmqpUrl : from.request.targetAmqpUrl) ?? '';
    const first = 'restoreId' in from ? this.resumeRestore(from.restoreId, signal, targetAmqpUrl) : this.restore(from.request, signal);
    return followRestoreEvents(first, (restoreId) => this.resumeRestore(restoreId, signal, targetAmqpUrl), options);
  }

  /** Stops a running restore; resolves to its state afterwards ("cancelled", or how it had ended). */
  async cancelRestore(restoreId: string): Promise<string> {
    return (await this.call((client, at) => callUnary(client.cancelRestore.bind(client), { restoreId }, this.options(at)))).state;
  }

  async listRestores(): Promise<RestoreSummary[]> {
    return (await this.call((client, at) => callUnary(client.listRestores.bind(client), {}, this.options(at)))).restores;
  }

  /** Checks a checkpoint's manifests and objects (with `full`, every record); no deadline. */
  verify(checkpoint: string, full: boolean, signal?: AbortSignal): AsyncGenerator<VerifyEvent, void, undefined> {
    return this.stream((client) => client.verify({ checkpoint, full }, this.metadata()), signal);
  }

  /** Restores into a scratch vhost, reconciles every queue, removes the vhost; no deadline. */
  restoreDrill(checkpoint: string, queues: string[], signal?: AbortSignal, history = false): AsyncGenerator<DrillEvent, void, undefined> {
    return this.stream((client) => client.restoreDrill({ checkpoint, queues, concurrency: 0, history }, this.metadata()), signal);
  }

  /**
   * Reads a server stream from the coordinator the route picks. A stream that fails before its
   * first event in a way that did nothing (a standby refused it, nothing answered) is opened again
   * where the route says; once an event has arrived, a failure is the caller's.
   */
  private async *stream<T>(open: (client: CoordinatorServiceClient) => grpc.ClientReadableStream<T>, signal?: AbortSignal): AsyncGenerator<T, void, undefined> {
    if (signal?.aborted) throw signal.reason;
    const tried = new Set<string>();
    for (let at: string | undefined = this.route.current; ; ) {
      tried.add(at);
      let received = false;
      try {
        for await (const event of readStream(open(this.clientFor(at)), { what: this.what(at), signal, mapError: (err) => fromServiceError(err, this.what(at!)) })) {
          if (!received) this.route.answered(at);
          received = true;
          yield event;
        }
        return;
      } catch (err) {
        const next = received || signal?.aborted ? undefined : this.route.next(err, tried);
        if (next === undefined) throw err instanceof TidemarkError ? this.mapError(err, at) : err;
        at = next;
      }
    }
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }

  private clientFor(address: string): CoordinatorServiceClient {
    let client = this.clients.get(address);
    if (!client) {
      const channel = coordinatorChannel(this.tls);
      client = new CoordinatorServiceClient(address, channel.credentials, channel.options);
      this.clients.set(address, client);
    }
    return client;
  }

  private options(address: string, deadlineMs = this.deadlineMs) {
    return { deadlineMs, what: this.what(address), metadata: this.metadata() };
  }

  private what(address: string): string {
    return `coordinator at ${address}`;
  }

  /** Sends a unary call where the route says, and on where it says next while the failure did nothing. */
  private async call<T>(send: (client: CoordinatorServiceClient, address: string) => Promise<T>): Promise<T> {
    const tried = new Set<string>();
    for (let at: string | undefined = this.route.current; ; ) {
      tried.add(at);
      try {
        const reply = await send(this.clientFor(at), at);
        this.route.answered(at);
        return reply;
      } catch (err) {
        const next = this.route.next(err, tried);
        if (next === undefined) throw err instanceof TidemarkError ? this.mapError(err, at) : err;
        at = next;
      }
    }
  }

  /** A coordinator that cannot be reached gets a message telling the operator how to start one. */
  private mapError(err: TidemarkError, address: string): TidemarkError {
    if (!isConnectFailure(err)) return err;
    const tlsProblem = transportSecurityProblem(address, this.tls.enabled, err.message);
    if (tlsProblem) return new TransientError(tlsProblem, { cause: err.cause });
    const which = this.route.addresses.length > 1 ? `any coordinator of ${this.route.addresses.join(', ')}` : `the coordinator at ${address}`;
    return new TransientError(
      `cannot reach ${which}: start one with "tidemark cluster up" or "tidemark coordinator", or set TIDEMARK_COORDINATOR / --coordinator`,
      { cause: err.cause },
    );
  }
}

/**
 * Why a connection to the coordinator failed, when TLS is the reason: a certificate the client
 * does not trust or that names another role, or one side speaking TLS and the other plaintext.
 * Undefined when the failure says nothing of TLS (refused, unresolvable, timed out).
 */
export function transportSecurityProblem(address: string, tlsEnabled: boolean, failure: string): string | undefined {
  const last = /Last error: (?:Error: )?(.*?)\.?\s*(?:Resolution note|$)/s.exec(failure)?.[1]?.trim() ?? failure;
  if (tlsEnabled && /wrong version number|packet length too long|http request/i.test(last)) {
    return `cannot connect to the coordinator at ${address} over TLS: it answers in plaintext (TIDEMARK_TLS=off on its side). Turn TLS on there, or, for development only, set TIDEMARK_TLS=off here too`;
  }
  if (tlsEnabled && /certificate|SSL|TLS|refusing to talk/i.test(last)) {
    return (
      `cannot connect to the coordinator at ${address} over TLS: ${last}. ` +
      "Check that TIDEMARK_TLS_CA (or --tls-ca) names the CA that signed the coordinator's certificate and TIDEMARK_TLS_COORDINATOR_NAME the name it carries (docs/SECURITY.md#transport-security)"
    );
  }
  if (!tlsEnabled && !/ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|Name resolution/i.test(last)) {
    return (
      `cannot reach the coordinator at ${address} in plaintext (TIDEMARK_TLS=off here): it closed the connection (${last}). ` +
      'A coordinator with TLS (the default) needs TLS here too: unset TIDEMARK_TLS and set TIDEMARK_TLS_CA (or --tls-ca) to its CA'
    );
  }
  return undefined;
}

export { RestoreFollowLostError } from './errors.js';
export { DEFAULT_TOKEN_FILE, tokenFromEnvironment } from './credentials.js';
