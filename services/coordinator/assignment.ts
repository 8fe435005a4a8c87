/**
 * The leader's worker pool and queue assignment (docs/ARCHITECTURE.md#assignment): one gRPC
 * client per live worker, and the pass that maps every protected queue to a live worker by
 * rendezvous hashing and sends each worker its full list.
 *
 * - a client lives as long as its worker's registration: one that left membership, or came back
 *   at another address (a new incarnation), is closed and replaced;
 * - a worker counts as holding its queues only once it acknowledged them in the last pass; a
 *   round includes only those (RoundPlan.participants), and what the others answered becomes the
 *   reason a round that lacks them aborts with;
 * - each queue starts where the latest visible checkpoint left it, except a renewed journal
 *   (discovery.ts), whose offsets those checkpoints do not name: its capture starts afresh;
 * - a worker that refuses the leader's token as stale, with a token at or above it, means this
 *   leader is outranked: the pass reports it and the caller steps down instead of adopting it.
 */
import { assign, type Catalog, errorMessage, type GrpcTls, headOf, type Logger, queueKey, StaleLeaderError, WorkerClient, type WorkerRegistration } from '../core/index.js';
import type { QueueAssignment, QueueRef } from '../gen/tidemark/v1/worker.js';
import type { QueueCheckpoint } from '../gen/tidemark/v1/store.js';
import type { RoundParticipant } from './checkpoint-round.js';
import type { ProtectedQueue } from './discovery.js';
import type { DecideRequest } from '../gen/tidemark/v1/worker.js';

/** The queues a worker acknowledged, with the address it was reached at. */
export interface AckedQueues {
  address: string;
  queues: QueueRef[];
}

/** One client per live worker, kept across passes and rounds. */
export class WorkerPool {
  /** By worker id; the same map throughout, so a holder of it sees later refreshes. */
  readonly clients = new Map<string, WorkerClient>();
  private generation = 0;

  /** `decisions` hears of every DECIDE sent through the pool's clients (retention, decisions-in-flight.ts). */
  constructor(
    private readonly decisions?: { sending(request: DecideRequest): void; ended(request: DecideRequest, nowMs: number): void },
    /** The coordinator's certificate material, for mutual TLS with workers. @default plaintext */
    readonly tls?: GrpcTls,
  ) {}

  /** Numbers an assignment pass; a worker keeps the newest assignment it was sent. */
  nextGeneration(): number {
    this.generation += 1;
    return this.generation;
  }

  /** Closes the clients of workers that left or moved; opens clients for new ones. */
  refresh(workers: WorkerRegistration[]): void {
    const live = new Set(workers.map((w) => w.id));
    for (const [id, client] of this.clients) {
      const current = workers.find((w) => w.id === id);
      if (!live.has(id) || current?.address !== client.address) {
        client.close();
        this.clients.delete(id);
      }
    }
    for (const worker of workers) {
      if (!this.clients.has(worker.id)) this.clients.set(worker.id, this.tracked(new WorkerClient(worker.address, { workerId: worker.id, tls: this.tls })));
    }
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
  }

  private tracked(client: WorkerClient): WorkerClient {
    const decisions = this.decisions;
    if (!decisions) return client;
    const decide = client.decide.bind(client);
    client.decide = (request, deadlineMs, signal) => {
      decisions.sending(request);
      return decide(request, deadlineMs, signal).finally(() => decisions.ended(request, Date.now()));
    };
    return client;
  }
}

export interface AssignmentInput {
  /** The live workers; the pool has a client for each (WorkerPool.refresh). */
  workers: WorkerRegistration[];
  pool: WorkerPool;
  protectedQueues: ReadonlyMap<string, ProtectedQueue>;
  /** Queues whose journal was renewed since their latest checkpoint. */
  renewed: ReadonlyMap<string, string>;
  catalog: Catalog;
  /** The leader's token, read at each send: a lease lost meanwhile sends one workers refuse. */
  leaderToken: () => number;
  /** How long one worker may take to acknowledge. */
  timeoutMs: number;
  log: Logger;
}

export interface AssignmentResult {
  /** By worker id: what each worker acknowledged. */
  acked: Map<string, AckedQueues>;
  /** Why workers did not take their queues. */
  failures: string[];
  /** The highest token a worker refused ours for, at or above ours; 0 if none did. */
  outranked: number;
}

/** Sends every live worker its full list of queues; all workers are asked at once. */
export async function assignQueues(input: AssignmentInput): Promise<AssignmentResult> {
  const { workers, pool, protectedQueues, renewed, catalog, leaderToken, timeoutMs, log } = input;
  const owners = assign(protectedQueues.keys(), workers.map((w) => w.id));
  const latest = await catalog.latestEpoch();
  const manifest = latest > 0 ? await catalog.get(latest) : undefined;
  const base = new Map(manifest?.queues.map((q) => [queueKey(q.definition!.vhost, q.definition!.name), q]));
  const generation = pool.nextGeneration();
  const acked = new Map<string, AckedQueues>();
  const failures: string[] = [];
  let outranked = 0;
  await Promise.all(
    workers.map(async (worker) => {
      const ids = owners.get(worker.id) ?? [];
      const queues: QueueAssignment[] = ids.map((id) => {
        const q = protectedQueues.get(id)!;
        // A renewed journal does not hold the offsets its checkpoints name: capture starts afresh.
        const b = renewed.has(id) ? undefined : base.get(id);
        return {
          definition: q.definition,
          journal: q.journal,
          resumeOffset: b?.cutOffset ?? 0,
          baseEpoch: b ? baseOf(b, latest) : 0,
          baseMessages: b?.messages ?? 0,
          baseBodyBytes: b?.bodyBytes ?? 0,
          startOffset: b?.startOffset ?? 0,
          baseHeadOffset: b ? headOf(b).offset : 0,
          baseHeadMessages: b ? headOf(b).messages : 0,
          basePredating: b?.predating ?? 0,
          baseHeadKnown: b?.headKnown ?? false,
        };
      });
      try {
        // A stalled worker must not hold up the pass (and the rounds queued behind it) for long.
        await pool.clients.get(worker.id)!.assign({ leaderToken: leaderToken(), generation, queues }, timeoutMs);
        acked.set(worker.id, { address: worker.address, queues: queues.map((q) => ({ vhost: q.definition!.vhost, queue: q.definition!.name, census: undefined })) });
      } catch (err) {
        log.warn('assignment to a worker failed', { worker: worker.id, queues: ids.length, err: errorMessage(err) });
        if (ids.length > 0) failures.push(`worker ${worker.id} did not take its ${ids.length} queue(s): ${errorMessage(err)}`);
        if (err instanceof StaleLeaderError && err.current >= leaderToken()) outranked = Math.max(outranked, err.current);
      }
    }),
  );
  return { acked, failures, outranked };
}

/** A round's participants: the workers that acknowledged queues in the last pass. */
export function participantsOf(acked: ReadonlyMap<string, AckedQueues>): RoundParticipant[] {
  return [...acked.entries()].filter(([, a]) => a.queues.length > 0).map(([workerId, a]) => ({ workerId, queues: a.queues }));
}

/** The queues `worker` holds; an acknowledgement from an earlier incarnation of it does not count. */
export function queuesHeldBy(acked: ReadonlyMap<string, AckedQueues>, worker: WorkerRegistration): number {
  const a = acked.get(worker.id);
  return a?.address === worker.address ? a.queues.length : 0;
}

/**
 * The base a queue's capture resumes from, given its entry in checkpoint `latest`: `latest`, or,
 * for an entry carried forward outside the cut (G8), the checkpoint whose cut it still holds. The
 * record at the entry's cut offset is that checkpoint's fence, which the capture checks on resume.
 */
export function baseOf(entry: QueueCheckpoint, latest: number): number {
  return entry.outsideCut?.sinceEpoch ?? latest;
}
