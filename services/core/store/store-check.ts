/**
 * Readiness check of the object store (infrastructure/readiness.ts): one existence check of a key
 * nothing writes. A missing object is an answer; a refused connection, a timeout or a denied
 * request is not. Every 5 s: each check is a request to S3.
 */
import type { ReadinessCheck } from '../infrastructure/readiness.js';
import type { ObjectStore } from './object-store.js';

/** A key no Tidemark version writes: asking for it costs one HEAD request and finds nothing. */
export const HEALTH_PROBE_KEY = 'health-probe';

export function storeCheck(store: Pick<ObjectStore, 'has'>): ReadinessCheck {
  return { name: 'store', probe: async () => void (await store.has(HEALTH_PROBE_KEY)), everyMs: 5_000 };
}
