/**
 * How Tidemark errors cross the wire and come back as the same classes: a handler's error becomes
 * a gRPC status with trailers naming its class, a failed call becomes a Tidemark error again, and
 * the one classification of retryable gRPC failures.
 */
import * as grpc from '@grpc/grpc-js';
import {
  ConfigError,
  CorruptDataError,
  FailedPreconditionError,
  NotFoundError,
  NotLeaderError,
  PermissionDeniedError,
  StaleLeaderError,
  TidemarkError,
  TransientError,
  UnauthenticatedError,
  errorMessage,
} from '../errors.js';

/** Trailer naming the Tidemark error class: marks a status as raised by a Tidemark handler, not the transport. */
const errorClassKey = 'tidemark-error';
const staleTokenKey = 'tidemark-stale-token';
const currentTokenKey = 'tidemark-current-token';
/** Trailer of a NotLeaderError: host:port of the leader's admin API, when the standby knows it. */
export const LEADER_ADDRESS_KEY = 'tidemark-leader-address';

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
  } else if (err instanceof NotLeaderError) {
    code = grpc.status.FAILED_PRECONDITION;
    if (err.leaderAddress) metadata.set(LEADER_ADDRESS_KEY, err.leaderAddress);
  } else if (err instanceof FailedPreconditionError) code = grpc.status.FAILED_PRECONDITION;
  else if (err instanceof CorruptDataError) code = grpc.status.DATA_LOSS;
  else if (err instanceof TransientError) code = grpc.status.UNAVAILABLE;
  else if (err instanceof UnauthenticatedError) code = grpc.status.UNAUTHENTICATED;
  else if (err instanceof PermissionDeniedError) code = grpc.status.PERMISSION_DENIED;
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
    case grpc.status.UNAUTHENTICATED:
      return new UnauthenticatedError(message, options);
    case grpc.status.PERMISSION_DENIED:
      return new PermissionDeniedError(message, options);
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
      if (err.metadata?.get(errorClassKey)[0] === 'NotLeaderError') {
        const leader = err.metadata.get(LEADER_ADDRESS_KEY)[0];
        return new NotLeaderError(message, leader === undefined || leader === '' ? undefined : String(leader), options);
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
