/**
 * What the leader gathers before a round and does after one commits, around runRound
 * (round-runner.ts): the RoundPlan, built from the last discovery and assignment passes and the
 * latest visible checkpoint, and re-arming the restart sentinels a committed checkpoint used.
 *
 * - a round covers every protected queue, and only workers that acknowledged their queues in the
 *   last pass take part (participantsOf): a queue left without one aborts the round at its start,
 *   naming why (unassignedWhy);
 * - the parent is the latest VISIBLE checkpoint, and a worker's base must be visible too: a
 *   staged round that never became visible is never built on;
 * - each queue's cut and marks come over from the parent (priorEntries), except for a renewed
 *   journal, which starts afresh (RoundPlan.renewed); so does its whole entry, carried forward if
 *   the queue cannot take part (G8);
 * - the round id is unique per round even where epochs repeat (Redis lost), and fences carry it.
 */
import { randomBytes } from 'node:crypto';
import { type Catalog, errorMessage, fenceExchangeName, type Logger, type OutsideQueue, queueKey } from '../core/index.js';
import type { CheckpointManifest } from '../gen/tidemark/v1/store.js';
import { type AssignmentResult, participantsOf } from './assignment.js';
import type { BrokerContinuity } from './broker-continuity.js';
import type { PriorEntry, RoundPlan } from './checkpoint-round.js';
import type { DiscoveryResult } from './discovery.js';

/** A round id: the leader's token, the epoch and 48 random bits. */
export function newRoundId(leaderToken: number, epoch: number): string {
  return `${leaderToken}-${epoch}-${randomBytes(6).toString('hex')}`;
}

export interface RoundPlanInput {
  namespace: string;
  coordinatorId: string;
  leaderToken: number;
  epoch: number;
  roundId: string;
  startedAtMs: number;
  /** The visible checkpoints, oldest first; the last is the parent. */
  visibleEpochs: number[];
  /** The last discovery pass: the protected queues, their exchanges, renewed journals. */
  discovered: Pick<DiscoveryResult, 'queues' | 'exchanges' | 'renewed'>;
  /** The last assignment pass: what each worker acknowledged, and why others did not. */
  assigned: Pick<AssignmentResult, 'acked' | 'failures'>;
  /** The parent's entries (priorEntries). */
  prior: Map<string, PriorEntry>;
  /** All-or-nothing rounds (config strictRounds). @default false: a queue that cannot take part is carried (G8) */
  strict?: boolean;
}

export function roundPlan(input: RoundPlanInput): RoundPlan {
  const { visibleEpochs, discovered, assigned } = input;
  const visible = new Set(visibleEpochs);
  const queues = new Map([...discovered.queues].map(([id, q]) => [id, { definition: q.definition, journal: q.journal }]));
  return {
    epoch: input.epoch,
    roundId: input.roundId,
    leaderToken: input.leaderToken,
    coordinatorId: input.coordinatorId,
    startedAtMs: input.startedAtMs,
    vhosts: [...new Set([...queues.values()].map((q) => q.definition.vhost))].sort(),
    fenceExchange: fenceExchangeName(input.namespace),
    participants: participantsOf(assigned.acked),
    queues,
    exchanges: discovered.exchanges,
    parentEpoch: latestOf(visibleEpochs),
    isVisible: (e) => visible.has(e),
    prior: input.prior,
    renewed: new Map([...discovered.renewed].filter(([id]) => queues.has(id))),
    unassignedWhy: assigned.failures.join('; '),
    strict: input.strict ?? false,
  };
}

/** The latest of the visible checkpoints (oldest first), 0 if none. */
export function latestOf(visibleEpochs: number[]): number {
  return visibleEpochs.length > 0 ? visibleEpochs[visibleEpochs.length - 1] : 0;
}

/** Each queue's cut and marks in checkpoint `epoch` (0: none), which the next round builds on. */
export async function priorEntries(catalog: Catalog, epoch: number): Promise<Map<string, PriorEntry>> {
  return priorOf(epoch === 0 ? undefined : await catalog.get(epoch));
}

/**
 * For the queues `manifest` carries from older cuts (G8), when the round of that cut started, by
 * queueKey (JournalRenewals): read from checkpoint `since_epoch`; 0 if it cannot be read, which
 * counts any journal as renewed since, the safe side (a mark, never a silent hole).
 */
export async function carriedSince(catalog: Catalog, manifest: CheckpointManifest): Promise<Map<string, number>> {
  const carried = new Map<string, number>();
  for (const q of manifest.queues) {
    if (!q.outsideCut) continue;
    const startedAtMs = await catalog.get(q.outsideCut.sinceEpoch).then((m) => m.startedAtMs, () => 0);
    carried.set(queueKey(q.definition!.vhost, q.definition!.name), startedAtMs);
  }
  return carried;
}

/** Each queue's cut and marks in `manifest` (none: no parent). */
export function priorOf(manifest: CheckpointManifest | undefined): Map<string, PriorEntry> {
  const prior = new Map<string, PriorEntry>();
  for (const q of manifest?.queues ?? []) {
    prior.set(queueKey(q.definition!.vhost, q.definition!.name), { cutOffset: q.cutOffset, incomplete: q.incomplete, entry: q });
  }
  return prior;
}

/**
 * A checkpoint that marked a vhost's queues for a broker restart has committed: the vhost's
 * sentinel is declared again, so the next restart is seen. If that fails the sentinel stays
 * missing and the next round marks the queues again, which is safe.
 */
export async function rearmSentinels(continuity: BrokerContinuity, manifest: CheckpointManifest, log: Logger, outside: readonly OutsideQueue[] = []): Promise<void> {
  const vhosts = new Set(manifest.queues.filter((q) => q.incomplete.some((m) => m.epoch === manifest.epoch)).map((q) => q.definition!.vhost));
  // A queue left out of the checkpoint (G8: it could not take part, and no checkpoint holds it
  // yet) carries no mark: its vhost's sentinel stays missing, so the next round marks it.
  for (const o of outside) if (o.sinceEpoch === 0) vhosts.delete(o.vhost);
  for (const vhost of vhosts) {
    await continuity.arm(vhost).catch((err) => log.warn('declaring the restart sentinel of a vhost failed; the next round marks its queues again', { vhost, err: errorMessage(err) }));
  }
}
