/**
 * @tidemark/client: the typed client over a Tidemark coordinator's admin API, as the tidemark
 * CLI uses it (services/client), with the TLS helper and the error classes a call can end with.
 * docs/CLIENT.md shows it at work.
 */
export * from '../../../services/client/index.js';
export {
  clientTlsFromFiles,
  type ClientTlsFiles,
  ConfigError,
  CorruptDataError,
  FailedPreconditionError,
  type GrpcTls,
  isRetryableGrpcError,
  NotFoundError,
  PermissionDeniedError,
  StaleLeaderError,
  TidemarkError,
  TransientError,
  UnauthenticatedError,
} from '../../../services/core/client-side/index.js';
