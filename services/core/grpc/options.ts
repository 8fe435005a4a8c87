/**
 * The options every Tidemark gRPC channel and server share: message size limits, keepalive and
 * reconnect backoff.
 */
import type * as grpc from '@grpc/grpc-js';

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
