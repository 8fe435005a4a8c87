/**
 * Redis for the other modules: opening a service's client. An entry of its own, so that importing
 * core does not load ioredis.
 */
export { openRedis, redisCheck } from './redis-client.js';
