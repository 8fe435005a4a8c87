/**
 * The coordinator's StatusReply (admin API `Status`): what the store and Redis say (the latest
 * checkpoint, the lease, live workers), what the leader holds (its assignment, rounds, coverage,
 * queues held back), and what is asked of others: each worker's own report on its captures, who
 * relays each firehose vhost, the broker's nodes as the resource guard last read them.
 *
 * - a standby answers too: what only the leader knows is left empty (zero) on a standby, and
 *   each such field checks leadership when it is read;
 * - status answers even when a worker or the management API does not: a worker is asked with a
 *   deadline (WORKER_STATUS_DEADLINE_MS) and shown unreachable, a relay whose consumers cannot be
 *   read is shown unknown, with why;
 * - a worker's acknowledgement counts only for the incarnation it came from (queuesHeldBy);
 * - asking does not change the pool: a worker without a client (not yet seen by a pass) is asked
 *   through a client of its own, closed afterwards.
 */
import {
  type Catalog,
  type Config,
  errorMessage,
  firehoseQueueName,
  type GrpcTls,
  firehoseVhostsOf,
  type Membership,
  relayUnknown,
  relayView,
  type RelayView,
  WorkerClient,
  type WorkerRegistration,
} from '../core/index.js';
import type { ManagementClient, NodeResources } from '../core/amqp/index.js';
import type { BrokerNode, CaptureLag, StatusReply } from '../gen/tidemark/v1/admin.js';
import type { WorkerStatus } from '../gen/tidemark/v1/worker.js';
import { roundOutcome } from './admin-enums.js';
import { queuesHeldBy, type AckedQueues } from './assignment.js';
import { incompleteQueues } from './broker-continuity.js';
import { outsideCutQueues } from './outside-cut.js';
import type { CoverageTracker } from './coverage.js';
import type { JournalRetention } from './journal-retention.js';
import type { LeaderLease } from './leader-lease.js';
import type { LeaderDirectory } from './leader-directory.js';
import type { ResourceGuard, WaitingQueue } from './resource-guard.js';
import type { LastRound, RoundHistory } from './round-history.js';

/** Queues held back by the resource guard that status lists by name (it counts them all). */
const UNPROTECTED_LISTED = 100;

/** What status reads; the functions are called when their field is assembled. */
export interface StatusSources {
  coordinatorId: string;
  config: Pick<Config, 'interval' | 'namespace' | 'firehoseVhosts' | 'strictRounds'>;
  storeUrl: string;
  lease: Pick<LeaderLease, 'current'>;
  /** Where the leader's admin API is, as it published it. @default unknown */
  leaders?: Pick<LeaderDirectory, 'leader'>;
  membership: Pick<Membership, 'live'>;
  catalog: Pick<Catalog, 'latestEpoch' | 'get'>;
  management: ManagementClient;
  guard?: Pick<ResourceGuard, 'nodes'>;
  retention?: Pick<JournalRetention, 'boundBytes' | 'pressure'>;
  clients: ReadonlyMap<string, WorkerClient>;
  /** Certificate material for workers not in `clients`. @default plaintext */
  workerTls?: GrpcTls;
  coverage: CoverageTracker;
  isLeader(): boolean;
  /** Queues each worker acknowledged in the last assignment pass. */
  acked(): ReadonlyMap<string, AckedQueues>;
  protectedQueues(): number;
  history: RoundHistory;
  coverageUnchecked(): number;
  /** Queues the resource guard held back in the last discovery pass. */
  waiting(): WaitingQueue[];
}

export async function statusReply(s: StatusSources): Promise<StatusReply> {
  const workers = await s.membership.live().catch(() => []);
  const latest = await s.catalog.latestEpoch();
  const latestManifest = latest > 0 ? await s.catalog.get(latest) : undefined;
  const current = await s.lease.current().catch(() => undefined);
  const reports = await Promise.all(workers.map(async (w) => ({ w, health: await workerHealth(s.clients, w, s.workerTls) })));
  return {
    coordinatorId: s.coordinatorId,
    leader: s.isLeader(),
    leaderToken: current?.token ?? 0,
    leaderId: current?.id ?? '',
    leaderAddress: (current && s.leaders?.leader?.token === current.token ? s.leaders.leader.address : undefined) ?? '',
    workers: reports.map(({ w, health: { lagging: _, ...health } }) => ({ workerId: w.id, address: w.address, queues: queuesHeldBy(s.acked(), w), ...health })),
    captureLag: reports
      .flatMap((r) => r.health.lagging)
      .sort((a, b) => b.lagSeconds - a.lagSeconds || b.lagMessages - a.lagMessages)
      .slice(0, CAPTURE_LAG_LISTED),
    protectedQueues: s.protectedQueues(),
    latestCheckpoint: latest,
    latestCheckpointAtMs: latestManifest?.committedAtMs ?? 0,
    roundsCommitted: s.history.counts.committed,
    roundsAborted: s.history.counts.aborted,
    lastRound: lastRoundReply(s.history.last),
    store: s.storeUrl,
    intervalMs: s.config.interval,
    coverageGaps: s.isLeader() ? s.coverage.gaps() : [],
    coverageUnchecked: s.isLeader() ? s.coverageUnchecked() : 0,
    coverageSettleMs: s.isLeader() ? s.coverage.settleMs : 0,
    firehose: s.isLeader() ? await firehoseRelays(s.management, s.config.namespace, s.config.firehoseVhosts) : [],
    incompleteQueues: latestManifest ? incompleteQueues(latestManifest) : [],
    contentsQueues: (latestManifest?.queues ?? [])
      .filter((q) => q.predating > 0 || !q.headKnown)
      .map((q) => ({ vhost: q.definition!.vhost, queue: q.definition!.name, predating: q.predating, headKnown: q.headKnown, reason: q.headBasis })),
    outsideCut: latestManifest ? outsideCutQueues(latestManifest) : [],
    strictRounds: s.config.strictRounds,
    unprotected: s.isLeader() ? s.waiting().slice(0, UNPROTECTED_LISTED) : [],
    unprotectedCount: s.isLeader() ? s.waiting().length : 0,
    brokerNodes: s.isLeader() ? brokerNodes(s.guard?.nodes ?? []) : [],
    journalBoundBytes: s.isLeader() ? (s.retention?.boundBytes ?? 0) : 0,
    journalPressure: s.isLeader() ? (s.retention?.pressure ?? '') : '',
  };
}

/** Queues status lists as lagging at most: the furthest behind. */
const CAPTURE_LAG_LISTED = 100;

/** How long status (and the coverage check) waits for each worker's own report. */
export const WORKER_STATUS_DEADLINE_MS = 2_000;

function lastRoundReply(round: LastRound | undefined): StatusReply['lastRound'] {
  return round && { ...round, outcome: roundOutcome(round.outcome) };
}

/** Asks a worker how its captures are doing: capture errors and lag surface in status. */
export async function workerHealth(
  clients: ReadonlyMap<string, WorkerClient>,
  worker: WorkerRegistration,
  tls?: GrpcTls,
): Promise<{ reachable: boolean; error: string; lagMessages: number; maxLagSeconds: number; lagging: CaptureLag[] }> {
  const { report, error } = await workerReport(clients, worker, tls);
  if (!report) return { reachable: false, error, lagMessages: 0, maxLagSeconds: 0, lagging: [] };
  const failing = report.queues.filter((q) => q.error !== '');
  const lagging = report.queues
    .filter((q) => q.lagMessages > 0)
    .map((q) => ({ vhost: q.vhost, queue: q.queue, workerId: worker.id, lagMessages: q.lagMessages, lagSeconds: q.lagSeconds }));
  return {
    reachable: true,
    error: failing.length === 0 ? '' : `${failing.length} queue(s) not capturing: ${failing.slice(0, 3).map((q) => q.error).join('; ')}`,
    lagMessages: lagging.reduce((n, q) => n + q.lagMessages, 0),
    maxLagSeconds: Math.max(0, ...lagging.map((q) => q.lagSeconds)),
    lagging,
  };
}

/** A worker's own report on its captures (with WORKER_STATUS_DEADLINE_MS), or why there is none. */
export async function workerReport(
  clients: ReadonlyMap<string, WorkerClient>,
  worker: WorkerRegistration,
  tls?: GrpcTls,
): Promise<{ worker: WorkerRegistration; report?: WorkerStatus; error: string }> {
  const client = clients.get(worker.id) ?? new WorkerClient(worker.address, { workerId: worker.id, tls });
  try {
    return { worker, report: await client.status(WORKER_STATUS_DEADLINE_MS), error: '' };
  } catch (err) {
    return { worker, error: errorMessage(err) };
  } finally {
    if (!clients.has(worker.id)) client.close();
  }
}

/** The broker's nodes as the resource guard last read them. */
export function brokerNodes(nodes: readonly NodeResources[]): BrokerNode[] {
  return nodes.map((n) => ({
    name: n.name,
    fdUsed: n.fdUsed ?? 0,
    fdTotal: n.fdTotal ?? 0,
    memUsed: n.memUsed ?? 0,
    memLimit: n.memLimit ?? 0,
    memAlarm: n.memAlarm,
    diskFree: n.diskFree ?? 0,
    diskFreeLimit: n.diskFreeLimit ?? 0,
    diskFreeAlarm: n.diskFreeAlarm,
  }));
}

/** Who relays each firehose vhost, from the broker's consumer list of its firehose queue. */
export function firehoseRelays(management: ManagementClient, namespace: string, firehoseVhosts: string): Promise<RelayView[]> {
  const queue = firehoseQueueName(namespace);
  return Promise.all(
    [...firehoseVhostsOf(firehoseVhosts)].sort().map((vhost) =>
      management.queueConsumers(vhost, queue).then(
        (consumers) => relayView(vhost, consumers),
        (err: unknown) => relayUnknown(vhost, `cannot ask the management API: ${errorMessage(err)}`),
      ),
    ),
  );
}
