/**
 * What the status page's JSON API answers (docs/OPERATIONS.md#status-page), built from what the
 * admin API's read-only calls use: Status (coordinator-status.ts), ListCheckpoints
 * (checkpointSummaries), ListRestores (RestoreService.list) and a prune's retention decision
 * (CheckpointPruner.plan), plus each worker's own capture report for the per-queue view. Nothing
 * here changes anything.
 */
import { queueKey } from '../core/index.js';
import { RoundOutcome, type CheckpointSummary, type RestoreSummary, type StatusReply } from '../gen/tidemark/v1/admin.js';
import type { CheckpointManifest } from '../gen/tidemark/v1/store.js';
import type { QueueCaptureStatus } from '../gen/tidemark/v1/worker.js';
import type { AdminCaller } from './admin-auth.js';
import { checkpointSummaries } from './admin-service.js';
import type { RetentionPolicy } from './checkpoint-retention.js';
import type { Coordinator } from './coordinator.js';
import type { RestoreService } from './restore-coordinator.js';
import type { StatusApi } from './status-page-server.js';

/** The newest checkpoints /api/checkpoints lists (the timeline); `total` counts them all. */
export const TIMELINE_CHECKPOINTS = 500;

/** One protected queue as the page shows it: its capture, its part of the latest cut, its coverage. */
export interface QueueView {
  vhost: string;
  queue: string;
  /** The worker capturing it, or '' when no live worker reports it. */
  worker: string;
  journal: string;
  /** Data messages capture has seen (QueueCaptureStatus.messages). */
  captured: number;
  nextOffset: number;
  durableOffset: number;
  buffered: number;
  /** Capture error, '' when capturing. */
  error: string;
  /**
   * How far capture is behind the journal's tail (docs/OPERATIONS.md#capture-lag); null for a
   * queue no worker reports on.
   */
  lagMessages: number | null;
  lagSeconds: number | null;
  /** This queue's part of the latest checkpoint, or null when it holds none. */
  cut: { epoch: number; cutOffset: number; messages: number; bodyBytes: number } | null;
  /** Outside the latest cut (carried from an older one, G8), and why. */
  outsideCut: { sinceEpoch: number; reason: string } | null;
  /** Marked possibly incomplete (G4), and why. */
  incomplete: { sinceEpoch: number; reason: string } | null;
  /** Messages the broker counted entering the queue that its journal did not capture (leader only). */
  coverageGap: { uncaptured: number; reason: string } | null;
  /** The latest checkpoint's contents of the queue are incomplete (predating > 0) or unknown (no safe head). */
  contents: { predating: number; headKnown: boolean; reason: string } | null;
}

export interface StatusView {
  generatedAtMs: number;
  /** Who the token belongs to, for "signed in as". */
  caller: { name: string; role: string };
  /** The admin API's Status reply, with the last round's outcome by name. */
  status: Omit<StatusReply, 'lastRound'> & { lastRound: (Omit<NonNullable<StatusReply['lastRound']>, 'outcome'> & { outcome: string }) | null };
  queues: QueueView[];
}

export interface RetentionView {
  policy: RetentionPolicy;
  graceMs: number;
  /** Kept checkpoints, ascending, each with every reason it is kept. */
  keep: Array<{ epoch: number; reasons: string[] }>;
  /** Checkpoints the next prune may delete. */
  drop: number[];
  pruneIntervalMs: number;
}

const OUTCOMES: Record<number, string> = {
  [RoundOutcome.ROUND_OUTCOME_PENDING]: 'pending',
  [RoundOutcome.ROUND_OUTCOME_COMMITTED]: 'committed',
  [RoundOutcome.ROUND_OUTCOME_ABORTED]: 'aborted',
};

/** The JSON routes of the status page. */
export function statusPageApi(coordinator: Coordinator, restores: RestoreService): StatusApi {
  return {
    '/api/status': (caller) => statusView(coordinator, caller),
    '/api/checkpoints': async () => {
      const all = await checkpointSummaries(coordinator.catalog);
      return { total: all.length, checkpoints: all.slice(-TIMELINE_CHECKPOINTS) satisfies CheckpointSummary[] };
    },
    '/api/restores': async () => ({ restores: (await restores.list()).sort((a, b) => b.createdAtMs - a.createdAtMs) satisfies RestoreSummary[] }),
    '/api/retention': async (): Promise<RetentionView> => {
      const plan = await coordinator.pruner.plan();
      return { policy: coordinator.pruner.policy, graceMs: coordinator.pruner.graceMs, keep: plan.keep, drop: plan.drop, pruneIntervalMs: coordinator.restoreParts.config.pruneInterval };
    },
  };
}

async function statusView(coordinator: Coordinator, caller: AdminCaller): Promise<StatusView> {
  const [status, reports] = await Promise.all([coordinator.status(), coordinator.captureReports()]);
  const latest = status.latestCheckpoint > 0 ? await coordinator.catalog.get(status.latestCheckpoint).catch(() => undefined) : undefined;
  const { lastRound, ...rest } = status;
  return {
    generatedAtMs: Date.now(),
    caller: { name: caller.name, role: caller.role },
    status: { ...rest, lastRound: lastRound ? { ...lastRound, outcome: OUTCOMES[lastRound.outcome] ?? 'unknown' } : null },
    queues: queueViews(
      reports.flatMap((r) => (r.report?.queues ?? []).map((q) => ({ worker: r.worker.id, capture: q }))),
      latest,
      status,
    ),
  };
}

/**
 * One row per queue a worker reports or the latest checkpoint holds, sorted by vhost and name:
 * the worker's capture, the queue's part of the latest cut, and what status says of its coverage.
 */
export function queueViews(
  captures: Array<{ worker: string; capture: QueueCaptureStatus }>,
  latest: CheckpointManifest | undefined,
  status: Pick<StatusReply, 'coverageGaps' | 'outsideCut' | 'incompleteQueues' | 'contentsQueues'>,
): QueueView[] {
  const rows = new Map<string, QueueView>();
  const row = (vhost: string, queue: string): QueueView => {
    const key = queueKey(vhost, queue);
    let view = rows.get(key);
    if (!view) {
      view = {
        vhost, queue, worker: '', journal: '', captured: 0, nextOffset: 0, durableOffset: 0, buffered: 0, error: '',
        lagMessages: null, lagSeconds: null, cut: null, outsideCut: null, incomplete: null, coverageGap: null, contents: null,
      };
      rows.set(key, view);
    }
    return view;
  };
  for (const { worker, capture } of captures) {
    const view = row(capture.vhost, capture.queue);
    Object.assign(view, {
      worker,
      journal: capture.journal,
      captured: capture.messages,
      nextOffset: capture.nextOffset,
      durableOffset: capture.durableOffset,
      buffered: capture.buffered,
      error: capture.error,
      // How far capture is behind the journal's tail (docs/OPERATIONS.md#capture-lag).
      lagMessages: capture.lagMessages,
      lagSeconds: capture.lagSeconds,
    });
  }
  for (const q of latest?.queues ?? []) {
    if (!q.definition) continue;
    row(q.definition.vhost, q.definition.name).cut = { epoch: latest!.epoch, cutOffset: q.cutOffset, messages: q.messages, bodyBytes: q.bodyBytes };
  }
  for (const q of status.outsideCut) row(q.vhost, q.queue).outsideCut = { sinceEpoch: q.sinceEpoch, reason: q.reason };
  for (const q of status.incompleteQueues) row(q.vhost, q.queue).incomplete = { sinceEpoch: q.sinceEpoch, reason: q.reason };
  for (const g of status.coverageGaps) row(g.vhost, g.queue).coverageGap = { uncaptured: g.uncaptured, reason: g.reason };
  for (const q of status.contentsQueues) row(q.vhost, q.queue).contents = { predating: q.predating, headKnown: q.headKnown, reason: q.reason };
  return [...rows.values()].sort((a, b) => a.vhost.localeCompare(b.vhost) || a.queue.localeCompare(b.queue));
}
