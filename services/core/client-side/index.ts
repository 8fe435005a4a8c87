/**
 * The part of core that a client of the admin API needs, and nothing that loads a library
 * besides @grpc/grpc-js: services/client imports core through this entry so that it ships as the
 * @tidemark/client package (clients/typescript) with @grpc/grpc-js and @bufbuild/protobuf as its
 * only dependencies. `npm run depcheck` enforces that (rule client-package-dependencies).
 * Re-exports only.
 */
export {
  ConfigError,
  CorruptDataError,
  errorMessage,
  FailedPreconditionError,
  NotLeaderError,
  NotFoundError,
  PermissionDeniedError,
  StaleLeaderError,
  TidemarkError,
  TransientError,
  UnauthenticatedError,
} from '../errors.js';
export { type CallOptions, callUnary, readStream } from '../grpc/client.js';
export { clientTlsFromFiles, type ClientTlsFiles } from '../grpc/client-tls.js';
export { fromServiceError, isConnectFailure, isRetryableGrpcError } from '../grpc/status.js';
export { coordinatorChannel, type GrpcTls, loadGrpcTls, type TlsSettings } from '../grpc/tls.js';
export { readTokenFile } from '../infrastructure/auth-tokens.js';
