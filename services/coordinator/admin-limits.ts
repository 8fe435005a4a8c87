/**
 * Bounds on what an admin API request may ask for (docs/SECURITY.md#bounded-requests): list
 * lengths, string lengths and numbers are checked before anything is read or published, so a
 * request cannot make the coordinator plan millions of globs, open thousands of publishers or
 * write Redis keys of any shape.
 */
import { ConfigError, RESTORE_ID_PATTERN } from '../core/index.js';
import type { RestoreRequest } from '../gen/tidemark/v1/admin.js';

/** Largest admin request the coordinator accepts, bytes: requests are small, replies may not be. */
export const ADMIN_MAX_REQUEST_BYTES = 1024 * 1024;
/** Most queue selectors (--queues) in one request. */
export const MAX_QUEUE_SELECTORS = 1_000;
/** Most --map and --map-vhost entries in one request. */
export const MAX_NAME_MAPPINGS = 10_000;
/** Longest selector, name or prefix, in bytes (RabbitMQ names are at most 255). */
export const MAX_NAME_BYTES = 1_024;
/** Most queues one restore publishes at once. */
export const MAX_CONCURRENCY = 1_024;
/** Most unconfirmed messages per queue a request may ask for. */
export const MAX_CONFIRM_WINDOW = 65_535;
/** Highest messages-per-second rate a request may name. */
export const MAX_RATE_LIMIT = 1_000_000_000;

function bytes(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

function checkNames(values: readonly string[], what: string, outcome = 'nothing was restored'): void {
  for (const value of values) {
    if (bytes(value) > MAX_NAME_BYTES) throw new ConfigError(`${what} "${value.slice(0, 40)}…" is longer than ${MAX_NAME_BYTES} bytes; ${outcome}`);
  }
}

function checkCount(value: number, max: number, what: string, outcome = 'nothing was restored'): void {
  if (value > max) throw new ConfigError(`${what} ${value} is above the limit of ${max}; ${outcome}`);
}

/** Throws ConfigError when a restore drill's request is beyond the bounds above. */
export function checkDrillLimits(request: { queues: readonly string[]; concurrency: number }): void {
  if (request.queues.length > MAX_QUEUE_SELECTORS) {
    throw new ConfigError(`${request.queues.length} queue selectors are more than the ${MAX_QUEUE_SELECTORS} a drill takes; nothing was done`);
  }
  checkNames(request.queues, 'queue selector', 'nothing was done');
  checkCount(request.concurrency, MAX_CONCURRENCY, 'concurrency', 'nothing was done');
}

/** Throws ConfigError when a restore request is beyond the bounds above. */
export function checkRestoreLimits(request: RestoreRequest): void {
  if (request.queues.length > MAX_QUEUE_SELECTORS) {
    throw new ConfigError(`${request.queues.length} queue selectors (--queues) are more than the ${MAX_QUEUE_SELECTORS} a restore takes: use globs; nothing was restored`);
  }
  const mappings = request.map.length + request.vhostMap.length;
  if (mappings > MAX_NAME_MAPPINGS) {
    throw new ConfigError(`${mappings} --map/--map-vhost entries are more than the ${MAX_NAME_MAPPINGS} a restore takes: use --prefix or several restores; nothing was restored`);
  }
  checkNames(request.queues, 'queue selector');
  checkNames(request.map.flatMap((m) => [m.from, m.to]), '--map name');
  checkNames(request.vhostMap.flatMap((m) => [m.from, m.to]), '--map-vhost name');
  checkNames([request.prefix, request.targetVhost, request.target, request.checkpoint, request.at, request.targetAmqpUrl, request.bindings, request.mode], 'field');
  checkCount(request.concurrency, MAX_CONCURRENCY, '--concurrency');
  checkCount(request.confirmWindow, MAX_CONFIRM_WINDOW, '--confirm-window');
  checkCount(request.rateLimit, MAX_RATE_LIMIT, '--rate');
}

/** Throws ConfigError unless `id` has the shape of a restore id. */
export function checkRestoreId(id: string): void {
  if (!RESTORE_ID_PATTERN.test(id)) {
    throw new ConfigError(`"${id.slice(0, 70)}" is not a restore id (letters, digits, - and _, at most 64): see "tidemark restore list"; nothing was done`);
  }
}
