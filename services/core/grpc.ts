/**
 * The gRPC edge shared by every service and client: how Tidemark errors cross the wire and come
 * back as the same classes, handler adapters that await promises and stop work when the caller
 * goes away, server start-up, and a promisified unary call with a deadline.
 */
import * as grpc from '@grpc/grpc-js';
import {
  ConfigError,
  CorruptDataError,
  FailedPreconditionError,
  NotFoundError,
  StaleLeaderError,
  TidemarkError,
  TransientError,
  errorMessage,
} from './errors.js';

/** Largest message either side accepts: manifests and assignments of big estates exceed gRPC's 4 MiB default. */
export const maxMessageBytes = 256 * 1024 * 1024;

/** Channel options for every Tidemark client (CLI, client library, coordinator-to-worker). */
export const clientChannelOptions: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': maxMessageBytes,
  'grpc.max_send_message_length': maxMessageBytes,
  // Long calls (checkpoint --wait, restore streams) must notice a dead peer, not hang on it.
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  // A restarted worker or coordinator is reachable again within seconds, not gRPC's 2 minutes.
  'grpc.initial_reconnect_backoff_ms': 500,
  'grpc.max_reconnect_backoff_ms': 5_000,
};

/** Server options for every Tidemark service. */
export const serverOptions: grpc.ServerOptions = {
  'grpc.max_receive_message_length': maxMessageBytes,
  'grpc.max_send_message_length': maxMessageBytes,
};

/** Trailer naming the Tidemark error class: marks a status as raised by a Tidemark handler, not the transport. */
const errorClassKey = 'tidemark-error';
const staleTokenKey = 'tidemark-stale-token';
const currentTokenKey = 'tidemark-current-token';

/** Maps a thrown error to the gRPC status a handler answers with; the details are its message. */
export function toServiceError(err: unknown): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  metadata.set(errorClassKey, err instanceof Error ? err.name : 'Error');
  let code = grpc.status.INTERNAL;
  if (err instanceof ConfigError) code = grpc.status.INVALID_ARGUMENT;
  else if (err instanceof NotFoundError) code = grpc.status.NOT_FOUND;
  else if (err instanceof StaleLeaderError) {
    code = grpc.status.FAILED_PRECONDITION;
    metadata.set(staleTokenKey, String(err.token));
    metadata.set(currentTokenKey, String(err.current));
  } else if (err instanceof FailedPreconditionError) code = grpc.status.FAILED_PRECONDITION;
  else if (err instanceof CorruptDataError) code = grpc.status.DATA_LOSS;
  else if (err instanceof TransientError) code = grpc.status.UNAVAILABLE;
  return { code, details: errorMessage(err), metadata };
}

const retryableCodes: ReadonlySet<grpc.status> = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.ABORTED,
]);

/**
 * The one place that classifies retryable gRPC failures. Takes a raw ServiceError, or a Tidemark
 * error (mapped from one or not), whose `retryable` flag then decides.
 */
export function isRetryableGrpcError(err: unknown): boolean {
  if (err instanceof TidemarkError) return err.retryable;
  return isServiceError(err) && retryableCodes.has(err.code);
}

export function isServiceError(err: unknown): err is grpc.ServiceError {
  return err instanceof Error && typeof (err as Partial<grpc.ServiceError>).code === 'number' && 'details' in err;
}

/** True when the status came from a Tidemark handler rather than from the transport. */
function raisedByHandler(err: grpc.ServiceError): boolean {
  return (err.metadata?.get(errorClassKey).length ?? 0) > 0;
}

/**
 * Maps a failed call back to a Tidemark error class. A handler's message is kept as it was sent;
 * a transport failure is prefixed with `what` (e.g. "worker w1 at host:7701") so the reader
 * knows which peer failed. The ServiceError stays reachable as `cause`.
 */
export function fromServiceError(err: grpc.ServiceError, what: string): TidemarkError {
  const message = raisedByHandler(err) ? err.details : `${what}: ${err.details || grpc.status[err.code]}`;
  const options = { cause: err };
  if (retryableCodes.has(err.code)) return new TransientError(message, options);
  switch (err.code) {
    case grpc.status.INVALID_ARGUMENT:
      return new ConfigError(message, options);
    case grpc.status.NOT_FOUND:
      return new NotFoundError(message, options);
    case grpc.status.DATA_LOSS:
      return new CorruptDataError(message, '', options);
    case grpc.status.FAILED_PRECONDITION: {
      const stale = Number(err.metadata?.get(staleTokenKey)[0]);
      const current = Number(err.metadata?.get(currentTokenKey)[0]);
      if (Number.isFinite(stale) && Number.isFinite(current)) {
        const mapped = new StaleLeaderError(stale, current);
        mapped.cause = err;
        return mapped;
      }
      return new FailedPreconditionError(message, options);
    }
    default:
      return new TidemarkError(message, options);
  }
}

/**
 * True when a call failed before reaching any server: refused, unresolvable, or still waiting
 * for a connection at its deadline. Accepts a ServiceError or an error whose cause is one.
 */
export function isConnectFailure(err: unknown): boolean {
  const service = isServiceError(err) ? err : err instanceof Error && isServiceError(err.cause) ? err.cause : undefined;
  if (!service || raisedByHandler(service)) return false;
  if (service.code === grpc.status.UNAVAILABLE) {
    return /No connection established|Name resolution failed|failed to connect|ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN/i.test(service.details);
  }
  if (service.code === grpc.status.DEADLINE_EXCEEDED) {
    return /Waiting for LB pick|waiting for name resolution/i.test(service.details);
  }
  return false;
}

/** A server call with an AbortSignal that fires when the client cancels or its deadline passes. */
export type WithSignal<Call> = Call & { readonly signal: AbortSignal };

function attachSignal<Call extends grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>>(
  call: Call,
): WithSignal<Call> {
  const controller = new AbortController();
  const abort = () => controller.abort(new TransientError('the client cancelled the call or its deadline passed'));
  if (call.cancelled) abort();
  else call.once('cancelled', abort);
  return Object.assign(call, { signal: controller.signal });
}

/**
 * A signal that aborts `marginMs` before the client's deadline (or with `call.signal`, whichever
 * comes first), so a handler can still answer why it ran out of time: at the deadline itself the
 * client has stopped listening. Without a deadline it is `call.signal`.
 */
export function beforeDeadline(call: WithSignal<grpc.ServerUnaryCall<unknown, unknown>>, marginMs: number): AbortSignal {
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : Number(deadline);
  if (!Number.isFinite(at) || call.signal.aborted) return call.signal;
  const left = at - Date.now();
  // Short deadlines keep most of their time: the margin is at most a tenth of what is left.
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new TransientError('the deadline of the call is about to pass')),
    Math.max(0, Math.floor(left - Math.min(marginMs, left / 10))),
  );
  call.signal.addEventListener('abort', () => controller.abort(call.signal.reason), { once: true });
  controller.signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
  call.once('finish', () => clearTimeout(timer));
  return controller.signal;
}

/** Adapts a promise-returning unary handler; a thrown error becomes its mapped gRPC status. */
export function unary<Req, Res>(
  fn: (request: Req, call: WithSignal<grpc.ServerUnaryCall<Req, Res>>) => Promise<Res>,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const withSignal = attachSignal(call);
    Promise.resolve()
      .then(() => fn(call.request, withSignal))
      .then(
        (response) => callback(null, response),
        (err: unknown) => callback(toServiceError(err)),
      );
  };
}

/**
 * Adapts a server-streaming handler: `emit` writes one message, resolving ends the stream, a
 * thrown error ends it with the mapped status. When the client cancels, `call.signal` aborts,
 * `call.cancelled` turns true and further emits are dropped; the handler should stop its work.
 */
export function serverStream<Req, Res>(
  fn: (request: Req, emit: (response: Res) => void, call: WithSignal<grpc.ServerWritableStream<Req, Res>>) => Promise<void>,
): grpc.handleServerStreamingCall<Req, Res> {
  return (call) => {
    const withSignal = attachSignal(call);
    const emit = (response: Res): void => {
      if (!call.cancelled && !call.writableEnded) call.write(response);
    };
    Promise.resolve()
      .then(() => fn(call.request, emit, withSignal))
      .then(
        () => {
          if (!call.cancelled && !call.writableEnded) call.end();
        },
        (err: unknown) => {
          // grpc-js turns an 'error' event on a server stream into the call's final status.
          if (!call.cancelled && !call.writableEnded) call.emit('error', toServiceError(err));
        },
      );
  };
}

/** Stands in for a request whose bytes did not decode; carries why. */
const undecodable = Symbol('undecodable request');
interface UndecodableRequest {
  readonly [undecodable]: string;
}

function isUndecodable(request: unknown): request is UndecodableRequest {
  return typeof request === 'object' && request !== null && undecodable in request;
}

function malformedRequest(path: string, request: UndecodableRequest): ConfigError {
  return new ConfigError(
    `malformed request: the bytes sent to ${path} do not decode as its request message (${request[undecodable]}); nothing was done. ` +
      'Send the request encoded from proto/tidemark/v1 of the same Tidemark version as the server',
  );
}

/**
 * A service whose requests that fail to decode are answered INVALID_ARGUMENT, saying so, without
 * reaching the handler. grpc-js turns an exception in a request deserializer into INTERNAL
 * "Error deserializing request", which reads like a server bug and says nothing useful; here the
 * deserializer hands a marker to the handler instead, and the wrapped handler answers the call.
 * Client-streaming methods (none yet) are left as grpc-js serves them.
 */
export function rejectUndecodableRequests(
  definition: grpc.ServiceDefinition,
  implementation: grpc.UntypedServiceImplementation,
): [grpc.ServiceDefinition, grpc.UntypedServiceImplementation] {
  const guardedDefinition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const guardedImplementation: grpc.UntypedServiceImplementation = { ...implementation };
  for (const [name, method] of Object.entries(definition)) {
    const handler = implementation[name] ?? (method.originalName === undefined ? undefined : implementation[method.originalName]);
    if (method.requestStream) {
      guardedDefinition[name] = method;
      continue;
    }
    guardedDefinition[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          return method.requestDeserialize(bytes);
        } catch (err) {
          return { [undecodable]: errorMessage(err) } satisfies UndecodableRequest;
        }
      },
    };
    // grpc-js answers a method without a handler UNIMPLEMENTED, whatever the request holds.
    if (handler === undefined) continue;
    if (method.responseStream) {
      const stream = handler as grpc.handleServerStreamingCall<unknown, unknown>;
      guardedImplementation[name] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
        // grpc-js turns an 'error' event on a server stream into the call's final status.
        if (isUndecodable(call.request)) call.emit('error', toServiceError(malformedRequest(method.path, call.request)));
        else stream.call(implementation, call);
      };
    } else {
      const unaryHandler = handler as grpc.handleUnaryCall<unknown, unknown>;
      guardedImplementation[name] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        if (isUndecodable(call.request)) callback(toServiceError(malformedRequest(method.path, call.request)));
        else unaryHandler.call(implementation, call, callback);
      };
    }
  }
  return [guardedDefinition as grpc.ServiceDefinition, guardedImplementation];
}

/**
 * Starts a gRPC server on `address` (host:port, port 0 picks a free one) with plaintext
 * credentials. Resolves with the bound port; a taken port is a ConfigError. Requests that do not
 * decode are answered INVALID_ARGUMENT ({@link rejectUndecodableRequests}); unknown services and
 * methods get grpc-js's UNIMPLEMENTED naming the method.
 */
export async function startServer(
  services: Array<[grpc.ServiceDefinition, grpc.UntypedServiceImplementation]>,
  address: string,
): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server(serverOptions);
  for (const [definition, implementation] of services) server.addService(...rejectUndecodableRequests(definition, implementation));
  try {
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound)));
    });
    return { server, port };
  } catch (err) {
    server.forceShutdown();
    const message = errorMessage(err);
    if (/EADDRINUSE|address already in use/i.test(message)) {
      throw new ConfigError(`address in use: pick another --listen (${address} is already bound by another process; nothing was started)`, { cause: err });
    }
    throw new ConfigError(`cannot listen on ${address}: ${message}; nothing was started. Check the --listen address.`, { cause: err });
  }
}

/** Stops a server: lets calls in flight finish for up to `graceMs`, then cuts them. */
export async function stopServer(server: grpc.Server, graceMs = 5_000): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    timer.unref();
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export interface CallOptions {
  /** Time the call may take before it fails with DEADLINE_EXCEEDED; Infinity for none. */
  deadlineMs: number;
  /** Names the peer and method in transport errors. @default "gRPC call" */
  what?: string;
  /** Cancels the call; the promise then rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Request metadata. @default none */
  metadata?: grpc.Metadata;
}

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  callback: (error: grpc.ServiceError | null, response: Res) => void,
) => grpc.ClientUnaryCall;

/**
 * Calls a unary method of a generated client (pass it bound: `client.status.bind(client)`) with
 * a deadline; rejects with the mapped Tidemark error.
 */
export function callUnary<Req, Res>(fn: UnaryMethod<Req, Res>, request: Req, options: CallOptions): Promise<Res> {
  const { signal, what = 'gRPC call' } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise<Res>((resolve, reject) => {
    const callOptions: Partial<grpc.CallOptions> = Number.isFinite(options.deadlineMs)
      ? { deadline: Date.now() + options.deadlineMs }
      : {};
    const onAbort = () => call.cancel();
    const call = fn(request, options.metadata ?? new grpc.Metadata(), callOptions, (err, response) => {
      signal?.removeEventListener('abort', onAbort);
      if (!err) resolve(response);
      else if (signal?.aborted) reject(signal.reason);
      else reject(fromServiceError(err, what));
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Reads a server stream as an async iterable. Cancels the call when `signal` aborts (the
 * iteration then throws the signal's reason) or when the consumer stops iterating early.
 * `mapError` turns a failed call into the error thrown. @default fromServiceError
 */
export async function* readStream<T>(
  stream: grpc.ClientReadableStream<T>,
  options: { what: string; signal?: AbortSignal; mapError?: (err: grpc.ServiceError) => Error },
): AsyncGenerator<T, void, undefined> {
  const { signal, what, mapError = (err: grpc.ServiceError) => fromServiceError(err, what) } = options;
  // grpc-js emits the final error directly; without a listener a late one would crash the process.
  stream.on('error', () => {});
  let finished = false;
  const onAbort = () => stream.cancel();
  if (signal?.aborted) stream.cancel();
  else signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const message of stream as AsyncIterable<T>) yield message;
    finished = true;
  } catch (err) {
    finished = true;
    if (signal?.aborted) throw signal.reason;
    throw isServiceError(err) ? mapError(err) : err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    if (!finished) stream.cancel();
  }
  if (signal?.aborted) throw signal.reason;
}

/** Throws ConfigError "<name> is required" when a request field is missing, empty or zero. */
export function requireField<T>(value: T | null | undefined, name: string): T {
  const empty =
    value === undefined ||
    value === null ||
    value === '' ||
    value === 0 ||
    (Array.isArray(value) && value.length === 0);
  if (empty) throw new ConfigError(`${name} is required`);
  return value;
}
