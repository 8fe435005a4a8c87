/**
 * The newest checkpoint that passed `tidemark verify`, kept in the store (`verified/latest`, JSON)
 * so that it survives Redis and leader changes like everything retention decides from (G5).
 * Retention never deletes it (checkpoint-retention.ts).
 */
import { CorruptDataError, errorMessage } from '../core/index.js';
import { type ObjectStore, VERIFIED_KEY } from '../core/store/index.js';

export interface VerifiedMarker {
  epoch: number;
  verifiedAtMs: number;
  /** Whether every record was decoded (verify --full), not only every object's checksum checked. */
  full: boolean;
}

/** The marker, or undefined if no checkpoint was ever verified. */
export async function readVerified(store: ObjectStore): Promise<VerifiedMarker | undefined> {
  if (!(await store.has(VERIFIED_KEY))) return undefined;
  // A line of JSON: anything larger was not written by Tidemark (and is not read whole).
  let bytes: Buffer;
  try {
    bytes = await store.get(VERIFIED_KEY, { maxBytes: 4096 });
  } catch (err) {
    if (!(err instanceof CorruptDataError)) throw err;
    throw new CorruptDataError(`${VERIFIED_KEY} in ${store.url} is not a verified marker (${errorMessage(err)}): run "tidemark verify latest" to write it again`, VERIFIED_KEY, { cause: err });
  }
  try {
    const value = JSON.parse(bytes.toString('utf8')) as { format_version?: number; epoch?: number; verified_at_ms?: number; full?: boolean };
    if (value.format_version !== 1 || !Number.isSafeInteger(value.epoch) || (value.epoch ?? 0) <= 0) throw new Error('unexpected content');
    return { epoch: value.epoch!, verifiedAtMs: Number(value.verified_at_ms ?? 0), full: value.full === true };
  } catch (err) {
    throw new CorruptDataError(`${VERIFIED_KEY} in ${store.url} is not a verified marker (${errorMessage(err)}): run "tidemark verify latest" to write it again`, VERIFIED_KEY);
  }
}

/**
 * Records that `epoch` passed verify, unless a newer checkpoint already did. A marker that cannot
 * be read is replaced: verify just proved this checkpoint whole.
 */
export async function recordVerified(store: ObjectStore, marker: VerifiedMarker): Promise<void> {
  const current = await readVerified(store).catch(() => undefined);
  if (current && current.epoch > marker.epoch) return;
  const body = { format_version: 1, epoch: marker.epoch, verified_at_ms: marker.verifiedAtMs, full: marker.full };
  await store.put(VERIFIED_KEY, Buffer.from(`${JSON.stringify(body)}\n`));
}
