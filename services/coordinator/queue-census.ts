/**
 * The census a round takes of its source queues between its marker and its fence, from which each
 * worker finds the queue's head at the cut (services/worker/queue-head.ts). The measurements
 * behind every rule are in docs/HEAD-AT-THE-CUT.md.
 *
 * Per vhost, in this order:
 *   1. the management API's consumers and cumulative counters are fetched (they may lag);
 *   2. the marker is published on the fence exchange and confirmed: it lands in every journal;
 *   3. every source queue of the round is declared passively (ready count and consumer count,
 *      exact when the queue answers, never before the marker); a stream source is read instead,
 *      its first and last offsets, which bound what it retained;
 *   4. the fence follows (round-runner.ts).
 *
 * The census never takes a message from a queue or touches its consumers (reading a stream
 * leaves it as it was for every other reader). Whatever fails (the API, a declare) makes
 * that queue's census a fallback: its head stays where it was, and the round goes on.
 */
import type { QueueDefinition } from '../gen/tidemark/v1/store.js';
import type { QueueCensus } from '../gen/tidemark/v1/worker.js';
import { errorMessage, fromFieldTable } from '../core/index.js';
import type { ConsumerInfo, QueueCensusCounters } from '../core/amqp/index.js';
import type { DeclaredQueue, StreamExtent } from './fence-channels.js';

export interface CensusSettings {
  /** Consumers may hold a message unacknowledged this long (0: they acknowledge in order). */
  maxHoldMs: number;
}

/** What the broker said of one queue around the marker. */
export interface QueueObservation {
  definition: QueueDefinition;
  declared: DeclaredQueue | Error | undefined;
  /** Undefined when the management API could not be asked. */
  consumers: ConsumerInfo[] | undefined;
  counters: QueueCensusCounters | undefined;
  /** Why the management API could not be asked. */
  managementError?: string;
  /** A stream source's extent read after the marker, or why it could not be read. */
  extent?: StreamExtent | Error;
}

/** A classic queue's answer is exact; a few messages cover a publish racing the marker. */
const CLASSIC_MARGIN = 2;
/** A quorum queue answers from applied Raft state: allow this long of its publish rate. */
const QUORUM_APPLY_LAG_MS = 50;
const QUORUM_MIN_MARGIN = 10;
/**
 * A stream's copy of a message routed before the marker may commit after the census read the
 * stream's last offset (its writer and the journal's are separate): allow this long of its rate.
 */
const STREAM_COMMIT_LAG_MS = 200;
/** A stream's margin when the management API could not give its publish rate. */
const STREAM_UNKNOWN_RATE_MARGIN = 1_000;
/** How long the fence waits for the management API after the declares. */
const MANAGEMENT_WAIT_MS = 2_000;

/**
 * The counters each queue had at the previous census: a requeue or a basic.get since then is
 * seen as a rise. The first census of a leader has nothing to compare with and sees none.
 */
export class CensusHistory {
  private readonly last = new Map<string, QueueCensusCounters>();

  /** Records `counters` for `id` and returns the previous ones. */
  swap(id: string, counters: QueueCensusCounters | undefined): QueueCensusCounters | undefined {
    const previous = this.last.get(id);
    if (counters) this.last.set(id, counters);
    return previous;
  }

  /** Forgets queues no longer protected. */
  retain(ids: Set<string>): void {
    for (const id of this.last.keys()) if (!ids.has(id)) this.last.delete(id);
  }
}

/** Why no head can be had from the counts for this queue this round, or '' if it can. */
export function fallbackOf(o: QueueObservation, previous: QueueCensusCounters | undefined): string {
  const d = o.definition;
  const args = fromFieldTable(d.arguments) as Record<string, unknown>;
  const policy = o.counters?.policy ?? {};
  if (d.type === 'stream') {
    if (o.extent === undefined) return 'the stream was not read in the census';
    if (o.extent instanceof Error) return `the stream could not be read: ${o.extent.message}`;
    return '';
  }
  if (args['x-max-priority'] !== undefined) return 'x-max-priority is set: higher priorities leave first, so no count locates the held messages';
  const overflow = String(args['x-overflow'] ?? policy['overflow'] ?? '');
  if (overflow === 'reject-publish' || overflow === 'reject-publish-dlx') {
    return `x-overflow is ${overflow}: the journal keeps messages the queue refused, so no count locates the held ones`;
  }
  if (o.declared === undefined) return 'the queue was not declared in the census';
  if (o.declared instanceof Error) return `the passive declare failed: ${o.declared.message}`;
  if (o.consumers === undefined || o.counters === undefined) return `the management API could not be asked: ${o.managementError ?? 'no answer'}`;
  const unlimited = o.consumers.filter((c) => c.ackRequired && c.prefetch === 0).length;
  if (unlimited > 0) return `${unlimited} consumer(s) acknowledge with no prefetch limit: nothing bounds their unacknowledged messages`;
  if (o.consumers.length !== o.declared.consumers) {
    return `consumers changed during the census (${o.consumers.length} by the management API, ${o.declared.consumers} by the broker)`;
  }
  if (previous && o.counters.get > previous.get) return 'basic.get with acknowledgement was used: nothing bounds what such a client holds';
  return '';
}

/** The census of one queue for the PREPARE, from what was observed. */
export function censusOf(o: QueueObservation, previous: QueueCensusCounters | undefined, markerAtMs: number, settings: CensusSettings): QueueCensus {
  const fallback = fallbackOf(o, previous);
  if (o.definition.type === 'stream') return streamCensusOf(o, fallback, markerAtMs);
  const declared = o.declared instanceof Error || o.declared === undefined ? undefined : o.declared;
  const unackedBound = (o.consumers ?? []).filter((c) => c.ackRequired).reduce((n, c) => n + c.prefetch, 0);
  const margin = o.definition.type === 'quorum' ? Math.max(QUORUM_MIN_MARGIN, Math.ceil(((o.counters?.publishRate ?? 0) * QUORUM_APPLY_LAG_MS) / 1000)) : CLASSIC_MARGIN;
  return {
    ready: declared?.ready ?? 0,
    unackedBound,
    margin,
    markerAtMs,
    maxHoldMs: settings.maxHoldMs,
    fallback,
    requeued: fallback === '' && previous !== undefined && o.counters !== undefined && o.counters.redeliver > previous.redeliver,
    stream: false,
  };
}

/**
 * A stream source's census: its held messages are what it retained (its own x-max-age and
 * x-max-length-bytes decide), counted from its offsets. No consumer removes any, so neither the
 * prefetch bound nor the hold bound applies, and nothing is ever requeued.
 */
function streamCensusOf(o: QueueObservation, fallback: string, markerAtMs: number): QueueCensus {
  const extent = o.extent instanceof Error ? undefined : o.extent;
  return {
    ready: extent?.messages ?? 0,
    unackedBound: 0,
    margin: o.counters ? Math.max(QUORUM_MIN_MARGIN, Math.ceil((o.counters.publishRate * STREAM_COMMIT_LAG_MS) / 1000)) : STREAM_UNKNOWN_RATE_MARGIN,
    markerAtMs,
    maxHoldMs: 0,
    fallback,
    requeued: false,
    stream: true,
  };
}

/** What the census of one vhost needs from the world. */
export interface VhostCensusParts {
  consumersByQueue: (vhost: string) => Promise<Map<string, ConsumerInfo[]>>;
  censusCounters: (vhost: string) => Promise<Map<string, QueueCensusCounters>>;
  /** Publishes the round's marker into every journal of the vhost and waits for its confirm. */
  publishMarker: () => Promise<void>;
  declareQueues: (names: string[]) => Promise<Map<string, DeclaredQueue | Error>>;
  /** Reads the extent of stream sources (after the marker). */
  streamExtents: (names: string[]) => Promise<Map<string, StreamExtent | Error>>;
  now: () => number;
}

/**
 * The census of one vhost's queues (`queues` by queue id). Throws only if the marker could not be
 * published: the round then goes on without a census for the vhost.
 */
export async function takeVhostCensus(
  vhost: string,
  queues: Map<string, QueueDefinition>,
  parts: VhostCensusParts,
  history: CensusHistory,
  settings: CensusSettings,
): Promise<Map<string, QueueCensus>> {
  const management = Promise.all([parts.consumersByQueue(vhost), parts.censusCounters(vhost)]).then(
    ([consumers, counters]) => ({ consumers, counters, error: undefined as string | undefined }),
    (err: unknown) => ({ consumers: undefined, counters: undefined, error: errorMessage(err) }),
  );
  await parts.publishMarker();
  const markerAtMs = parts.now();
  const streams = [...queues.values()].filter((d) => d.type === 'stream').map((d) => d.name);
  const [declared, extents] = await Promise.all([
    parts.declareQueues([...queues.values()].filter((d) => d.type !== 'stream').map((d) => d.name)),
    parts.streamExtents(streams),
  ]);
  // The fence waits for the census: a slow management API costs this round's heads, not its fence.
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<{ consumers: undefined; counters: undefined; error: string }>((resolve) => {
    timer = setTimeout(() => resolve({ consumers: undefined, counters: undefined, error: `no answer within ${MANAGEMENT_WAIT_MS} ms of the marker` }), MANAGEMENT_WAIT_MS);
  });
  const api = await Promise.race([management, late]).finally(() => clearTimeout(timer));
  const census = new Map<string, QueueCensus>();
  for (const [id, definition] of queues) {
    const counters = api.counters?.get(definition.name);
    const observation: QueueObservation = {
      definition,
      declared: declared.get(definition.name),
      consumers: api.consumers ? (api.consumers.get(definition.name) ?? []) : undefined,
      counters: api.counters ? (counters ?? { redeliver: 0, get: 0, publishRate: 0, policy: {} }) : undefined,
      managementError: api.error,
      extent: extents.get(definition.name),
    };
    census.set(id, censusOf(observation, history.swap(id, observation.counters), markerAtMs, settings));
  }
  return census;
}
