/**
 * The Redis client of a service (leases, membership, decision log, restore progress), opened
 * the same way by the coordinator and the worker.
 */
import { Redis } from 'ioredis';
import { abortable } from '../infrastructure/abortable.js';
import { redactUrl } from '../amqp/vhost-url.js';
import { throttledWarn, type Logger } from '../infrastructure/log.js';
import { ConfigError, StoppingError, TransientError } from '../errors.js';
import type { TlsMaterial } from '../infrastructure/backend-tls.js';
import type { ReadinessCheck } from '../infrastructure/readiness.js';

/**
 * How long disconnect() waits for Redis to acknowledge the close before dropping the socket. A
 * Redis that stopped answering would otherwise hold a stopping service for twice ioredis's 2 s.
 */
const DISCONNECT_TIMEOUT_MS = 200;

/**
 * ioredis options for TLS with `tls` (CA, client certificate): only for a rediss:// URL, since
 * certificates given for a plaintext URL would be silently unused.
 */
export function redisTlsOptions(redisUrl: string, tls: TlsMaterial | undefined): { tls?: TlsMaterial } {
  if (!tls) return {};
  if (!redisUrl.startsWith('rediss://')) {
    throw new ConfigError(`TIDEMARK_REDIS_TLS_* is set but TIDEMARK_REDIS_URL (${redactUrl(redisUrl)}) is plaintext: use a rediss:// URL. Nothing was started.`);
  }
  return { tls: { ...tls } };
}

/**
 * Connects to Redis. `signal` gives up a connect that does not answer (the service is being
 * stopped while it starts); on any failure the client is disconnected, since a client left
 * behind keeps reconnecting, and the process alive, for ever.
 */
export async function openRedis(redisUrl: string, log: Logger, signal?: AbortSignal, tls?: TlsMaterial): Promise<Redis> {
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2, disconnectTimeout: DISCONNECT_TIMEOUT_MS, ...redisTlsOptions(redisUrl, tls) });
  const warn = throttledWarn(log);
  let lastError: Error | undefined;
  redis.on('error', (err: Error) => {
    lastError = err;
    warn('Redis connection failed; reconnecting', { redis: redactUrl(redisUrl), err: err.message });
  });
  try {
    await abortable(redis.connect(), signal);
  } catch (err) {
    redis.disconnect();
    if (err instanceof StoppingError) throw err;
    // ioredis only says "Connection is closed."; the socket's own error says why.
    throw new TransientError(`cannot connect to Redis at ${redactUrl(redisUrl)}: ${(lastError ?? err as Error).message}; nothing was started. Check TIDEMARK_REDIS_URL and that Redis runs`, { cause: err });
  }
  return redis;
}

/**
 * Readiness check of a service's Redis (infrastructure/readiness.ts): the client is connected
 * (ioredis leaves `ready` at once when the socket drops) and answers a PING.
 */
export function redisCheck(redis: Pick<Redis, 'status' | 'ping'>): ReadinessCheck {
  return {
    name: 'redis',
    async probe() {
      if (redis.status !== 'ready') throw new TransientError(`not connected (the client is ${redis.status})`);
      await redis.ping();
    },
  };
}
