/**
 * Rendezvous (highest-random-weight) hashing: which worker owns a queue. Every process computes
 * the same owner from the same worker list, and a membership change moves only the keys it must:
 * keys move to a joining worker, and only a leaving worker's keys move away.
 *
 * The weight of (worker, key) is the first 64 bits of sha256(worker NUL key), big-endian; ties,
 * which need a 64-bit collision, go to the smaller worker id so the result stays total.
 */
import { createHash } from 'node:crypto';

function weight(worker: string, key: string): bigint {
  return createHash('sha256').update(`${worker}\u0000${key}`).digest().readBigUInt64BE(0);
}

/** The worker that owns key, or undefined when there are no workers. */
export function rendezvousOwner(key: string, workers: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestWeight = -1n;
  for (const worker of workers) {
    const w = weight(worker, key);
    if (w > bestWeight || (w === bestWeight && best !== undefined && worker < best)) {
      best = worker;
      bestWeight = w;
    }
  }
  return best;
}

/**
 * Each worker's keys, in the order the keys were given. Every worker is in the map, with an empty
 * list if it owns nothing; with no workers the map is empty.
 */
export function assign(keys: Iterable<string>, workers: readonly string[]): Map<string, string[]> {
  const out = new Map<string, string[]>(workers.map((w) => [w, []]));
  for (const key of keys) {
    const owner = rendezvousOwner(key, workers);
    if (owner !== undefined) out.get(owner)!.push(key);
  }
  return out;
}
