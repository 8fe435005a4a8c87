/**
 * A Tidemark gRPC server's life: start-up on an address (answering requests that do not decode
 * with INVALID_ARGUMENT) and a graceful stop.
 */
import * as grpc from '@grpc/grpc-js';
import { ConfigError, errorMessage } from '../errors.js';
import { serverOptions } from './options.js';
import { toServiceError } from './status.js';

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

export interface ServerLimits {
  /** Largest request message accepted (bigger ones get RESOURCE_EXHAUSTED). @default maxMessageBytes (256 MiB) */
  maxReceiveBytes?: number;
}

/**
 * Answers PERMISSION_DENIED, before the handler, every call `refuse` gives a reason for (e.g. a
 * worker's caller that is not the coordinator, tls.ts onlyPeerNamed).
 */
export function guardCalls(
  implementation: grpc.UntypedServiceImplementation,
  refuse: (call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>) => string | undefined,
): grpc.UntypedServiceImplementation {
  const guarded: grpc.UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(implementation)) {
    guarded[name] = ((call: grpc.ServerUnaryCall<unknown, unknown>, callback?: grpc.sendUnaryData<unknown>) => {
      const reason = refuse(call);
      if (reason === undefined) return (handler as (...args: unknown[]) => unknown).call(implementation, call, callback);
      const status = { code: grpc.status.PERMISSION_DENIED, details: reason };
      // A unary handler answers through its callback; a server stream through an 'error' event.
      if (callback) callback(status);
      else call.emit('error', status);
    }) as grpc.UntypedServiceImplementation[string];
  }
  return guarded;
}

export interface StartServerOptions extends ServerLimits {
  /** How the server secures its connections (tls.ts serverCredentials). @default plaintext */
  credentials?: grpc.ServerCredentials;
  /** A reason to refuse a call (PERMISSION_DENIED), checked before any handler. @default serve every call */
  refuse?: (call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>) => string | undefined;
}

/**
 * Starts a gRPC server on `address` (host:port, port 0 picks a free one) with `credentials`
 * (plaintext unless given). Resolves with the bound port; a taken port is a ConfigError. Requests
 * that do not decode are answered INVALID_ARGUMENT ({@link rejectUndecodableRequests}); unknown
 * services and methods get grpc-js's UNIMPLEMENTED naming the method.
 */
export async function startServer(
  services: Array<[grpc.ServiceDefinition, grpc.UntypedServiceImplementation]>,
  address: string,
  options: StartServerOptions = {},
): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server({ ...serverOptions, ...(options.maxReceiveBytes ? { 'grpc.max_receive_message_length': options.maxReceiveBytes } : {}) });
  for (const [definition, implementation] of services) {
    const [guardedDefinition, guardedImplementation] = rejectUndecodableRequests(definition, implementation);
    server.addService(guardedDefinition, options.refuse ? guardCalls(guardedImplementation, options.refuse) : guardedImplementation);
  }
  const credentials = options.credentials ?? grpc.ServerCredentials.createInsecure();
  try {
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(address, credentials, (err, bound) => (err ? reject(err) : resolve(bound)));
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
