/**
 * What core offers the other modules (client, coordinator, worker, cli). They import core through
 * this file, or through the index.ts of store/, amqp/ or redis/ for the clients of those systems,
 * which load heavy libraries the CLI does not need; core's own files import each other directly
 * (docs/ARCHITECTURE.md#layers). Re-exports only: nothing here runs when it is loaded.
 */
export { abortable, throwIfStopping } from './abortable.js';
export { Catalog } from './catalog.js';
export { type Clock, systemClock } from './clock.js';
export { type Config, environmentKeys, loadConfig } from './config.js';
export { type CommitRecord, DecisionLog, type DecisionRecord, type DecisionState, type QueueMark } from './decision-log.js';
export {
  ConfigError,
  CorruptDataError,
  DecisionConflictError,
  errorMessage,
  FailedPreconditionError,
  FailpointError,
  IncompletePrefixError,
  LeadershipLostError,
  MalformedMessageError,
  NotFoundError,
  NotLeaseHolderError,
  ObjectNotFoundError,
  StaleLeaderError,
  StoppingError,
  TidemarkError,
  TransientError,
} from './errors.js';
export { configureFailpoints, failpoint } from './failpoints.js';
export { fromFieldTable, toFieldTable, toProperties, toPublishOptions } from './field-table.js';
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
} from './firehose.js';
export { callUnary, readStream } from './grpc-client.js';
export { beforeDeadline, requireField, serverStream, unary } from './grpc-handlers.js';
export { clientChannelOptions } from './grpc-options.js';
export { startServer, stopServer } from './grpc-server.js';
export { fromServiceError, isConnectFailure, isRetryableGrpcError } from './grpc-status.js';
export { forEachLimited } from './limited.js';
export { createLogger, type Logger, throttledWarn } from './log.js';
export { Membership, type WorkerRegistration } from './membership.js';
export { type MetricsServer, serveMetrics } from './metrics-server.js';
export {
  FENCE_EPOCH_HEADER,
  FENCE_NAMESPACE_HEADER,
  FENCE_ROUND_HEADER,
  fenceExchangeName,
  isOwnObject,
  journalName,
  MAX_FILE_NAME_BYTES,
  MAX_UNDELIVERED_OFFSETS,
  ORIGIN_CHECKPOINT_HEADER,
  ORIGIN_OFFSET_HEADER,
  ORIGIN_QUEUE_HEADER,
  ORIGIN_RESTORE_HEADER,
  ORIGIN_VHOST_HEADER,
  redisKeys,
  STREAM_OFFSET_HEADER,
  streamDirectoryLength,
} from './names.js';
export { DRILL_VHOST_PREFIX, globMatcher, isDrillVhost, ProtectionPolicy } from './protect.js';
export { queueKey, splitQueueKey } from './queue-key.js';
export { assign, rendezvousOwner } from './rendezvous.js';
export { REDIS_SCRIPTS, type RedisScriptName } from './redis/lua-scripts.js';
export { type QueueProgress, type RestoreRecord, type RestoreState, RestoreStateStore } from './restore-state.js';
export { backoffDelay, retry } from './retry.js';
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
} from './segment-codec.js';
export { orderSegments, type PrefixSpec, readPrefix, verifyPrefix } from './segment-reader.js';
export { withTimeLimit } from './time-limit.js';
export { parseAtTime } from './time-spec.js';
export { type ByteUnit, type ByteUnitRange, formatBytes } from './units.js';
export { WorkerClient } from './worker-client.js';
