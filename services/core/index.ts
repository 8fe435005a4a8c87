/**
 * What core offers the other modules (client, coordinator, worker, cli). They import core through
 * this file, or through the index.ts of store/, amqp/ or redis/ for the clients of those systems,
 * of tls/ for the local CA, and of health/ for gRPC health and reflection, which load heavy libraries the CLI does not need; core's own files import each other directly
 * (docs/ARCHITECTURE.md#layers). Its folders are grouped by kind: state/, format/, store/, amqp/,
 * redis/, grpc/ and infrastructure/ (docs/ARCHITECTURE.md#inside-core). Re-exports only: nothing
 * here runs when it is loaded.
 */
export { abortable, throwIfStopping } from './infrastructure/abortable.js';
export { Catalog } from './state/catalog.js';
export { contentsMessages, headOf, historyOf, type QueueHead } from './state/contents.js';
export { type Clock, systemClock } from './infrastructure/clock.js';
export { type Config, environmentKeys, loadConfig } from './infrastructure/config.js';
export { type BackendTls, loadBackendTls, readTlsMaterial, type TlsMaterial } from './infrastructure/backend-tls.js';
export { type CommitRecord, DecisionLog, type DecisionRecord, type DecisionState, type OutsideQueue, type QueueMark } from './state/decision-log.js';
export {
  ConfigError,
  CorruptDataError,
  KeyUnavailableError,
  OversizedObjectError,
  UnauthenticatedDataError,
  FormatError,
  ManagementApiError,
  NameError,
  QueueProbeError,
  RestoreCancelledError,
  StoreError,
  DecisionConflictError,
  errorMessage,
  FailedPreconditionError,
  FailpointError,
  IncompletePrefixError,
  LeadershipLostError,
  MalformedMessageError,
  NotFoundError,
  NotLeaderError,
  NotLeaseHolderError,
  ObjectNotFoundError,
  PermissionDeniedError,
  RestoreAssignmentError,
  UnauthenticatedError,
  StaleLeaderError,
  StoppingError,
  TidemarkError,
  TransientError,
} from './errors.js';
export { configureFailpoints, failpoint } from './infrastructure/failpoints.js';
export { fromFieldTable, toFieldTable, toProperties, toPublishOptions } from './format/field-table.js';
export {
  firehoseQueueName,
  firehoseVhostsOf,
  parseTrace,
  relayConsumerTag,
  relayExchangeName,
  relayFenceKey,
  relayPublishOf,
  relayUnknown,
  type RelayView,
  relayView,
  TRACE_EXCHANGE,
  traceKeyOf,
  unwrapRelayed,
} from './amqp/firehose.js';
export { callUnary, readStream } from './grpc/client.js';
export { beforeDeadline, requireField, serverStream, unary } from './grpc/handlers.js';
export { clientChannelOptions } from './grpc/options.js';
export { startServer, stopServer } from './grpc/server.js';
export { advertiseAddress, chooseListen, isLoopback, type ListenChoice, logListenChoice } from './grpc/listen-address.js';
export {
  certificateIdentity,
  type CallWithAuthContext,
  type CertificateIdentity,
  coordinatorChannel,
  describeIdentity,
  expiryWarning,
  type GrpcTls,
  identityHasName,
  identityOfCertificate,
  loadGrpcTls,
  onlyPeerNamed,
  serverCredentials,
  type TlsRole,
  type TlsSettings,
  workerChannel,
} from './grpc/tls.js';
export { fromServiceError, isConnectFailure, isRetryableGrpcError, LEADER_ADDRESS_KEY, toServiceError } from './grpc/status.js';
export {
  CALLER_NAME,
  generateToken,
  hashToken,
  isRole,
  parseTokenLines,
  readTokenFile,
  readTokensFile,
  type Role,
  roleAllows,
  ROLES,
  type TokenEntry,
  tokenLine,
  TokenTable,
} from './infrastructure/auth-tokens.js';
export { forEachLimited } from './infrastructure/limited.js';
export { createLogger, type LogFields, type LogFormat, type Logger, resolveLogFormat, throttledWarn } from './infrastructure/log.js';
export { Membership, type WorkerRegistration } from './state/membership.js';
export { type MetricsServer, serveMetrics } from './infrastructure/metrics-server.js';
export { closeHttpServer, listenHttp, parseHttpListen } from './infrastructure/http-listen.js';
export {
  FENCE_EPOCH_HEADER,
  FENCE_NAMESPACE_HEADER,
  FENCE_ROUND_HEADER,
  MARKER_HEADER,
  MARKER_ROUND_SUFFIX,
  POSSIBLY_ACKED_HEADER,
  fenceExchangeName,
  isOwnObject,
  journalName,
  MAX_FILE_NAME_BYTES,
  MAX_QUEUE_NAME_BYTES,
  MAX_UNDELIVERED_OFFSETS,
  ORIGIN_CHECKPOINT_HEADER,
  ORIGIN_OFFSET_HEADER,
  ORIGIN_QUEUE_HEADER,
  ORIGIN_RESTORE_HEADER,
  ORIGIN_VHOST_HEADER,
  redisKeys,
  STREAM_OFFSET_HEADER,
  streamDirectoryLength,
} from './format/names.js';
export { DRILL_VHOST_PREFIX, globMatcher, isDrillVhost, ProtectionPolicy } from './infrastructure/protect.js';
export { queueKey, splitQueueKey } from './format/queue-key.js';
export { assign, rendezvousOwner } from './state/rendezvous.js';
export { REDIS_SCRIPTS, type RedisScriptName } from './redis/lua-scripts.js';
export { type QueueProgress, RESTORE_ID_PATTERN, type RestoreRecord, type RestoreState, RestoreStateStore } from './state/restore-state.js';
export { backoffDelay, retry } from './infrastructure/retry.js';
export {
  type AdaptiveCodec,
  captureCodec,
  createAdaptiveCodec,
  encodeSegment,
  fenceRangeRefOf,
  isFenceRange,
  type SegmentCodec,
  type SegmentCodecChoice,
  segmentRefOf,
  sha256Hex,
  storedSegmentCount,
} from './format/segment-codec.js';
export { orderSegments, type PrefixSpec, readPrefix, verifyPrefix } from './format/segment-reader.js';
export { withTimeLimit } from './infrastructure/time-limit.js';
export { Readiness, type ReadinessCheck, type ReadinessOptions, type ReadinessState } from './infrastructure/readiness.js';
export { parseAtTime } from './format/time-spec.js';
export { type ByteUnit, type ByteUnitRange, formatBytes } from './format/units.js';
export { WorkerClient } from './grpc/worker-client.js';
