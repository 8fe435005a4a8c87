/**
 * Server handler adapters: they await a handler's promise, answer a thrown error with its mapped
 * status, and give the handler an AbortSignal that fires when the caller goes away or its
 * deadline nears.
 */
import type * as grpc from '@grpc/grpc-js';
import { ConfigError, TransientError } from '../errors.js';
import { toServiceError } from './status.js';

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
