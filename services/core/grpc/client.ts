/**
 * The client side of a call: a promisified unary call with a deadline and a server stream read as
 * an async iterable, both failing with the mapped Tidemark error.
 */
import * as grpc from '@grpc/grpc-js';
import { fromServiceError, isServiceError } from './status.js';

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
