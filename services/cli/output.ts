/**
 * The CLI's --json shapes (stable, documented in docs/CLI.md) and the plain-text renderings.
 * JSON field names are camelCase; times are ISO-8601 strings; ids are epoch numbers as strings.
 */
import { RoundOutcome, type CheckpointReply, type CheckpointSummary, type PruneReply, type RestoreEvent, type RestoreSummary, type StatusReply } from '../gen/tidemark/v1/admin.js';
import type { CheckpointManifest, IncompleteMark, OutsideCut } from '../gen/tidemark/v1/store.js';
import { contentsMessages, formatBytes, headOf, historyOf, storedSegmentCount } from '../core/index.js';

const iso = (ms: number): string | null => (ms > 0 ? new Date(ms).toISOString() : null);

export function outcomeName(outcome: RoundOutcome): string {
  switch (outcome) {
    case RoundOutcome.ROUND_OUTCOME_COMMITTED:
      return 'committed';
    case RoundOutcome.ROUND_OUTCOME_ABORTED:
      return 'aborted';
    case RoundOutcome.ROUND_OUTCOME_PENDING:
      return 'pending';
    default:
      return 'unknown';
  }
}

export function checkpointJson(reply: CheckpointReply) {
  return { id: String(reply.epoch), epoch: reply.epoch, outcome: outcomeName(reply.outcome), reason: reply.reason, durationMs: reply.durationMs };
}

export function summaryJson(s: CheckpointSummary) {
  return {
    id: String(s.epoch),
    epoch: s.epoch,
    parentEpoch: s.parentEpoch,
    full: s.full,
    startedAt: iso(s.startedAtMs),
    committedAt: iso(s.committedAtMs),
    queues: s.queues,
    messages: s.messages,
    bodyBytes: s.bodyBytes,
    incompleteQueues: s.incompleteQueues,
    outsideQueues: s.outsideQueues,
  };
}

/** An OutsideCut: the queue's entry is carried from checkpoint sinceEpoch's cut (G8); null when it is inside the cut. */
export function outsideJson(o: OutsideCut | undefined) {
  return o ? { sinceEpoch: o.sinceEpoch, since: iso(o.sinceMs), reason: o.reason } : null;
}

/** `checkpoints prune --json` (docs/CLI.md): stable field names. */
export function pruneJson(r: PruneReply) {
  return {
    dryRun: r.dryRun,
    deleted: r.deleted,
    kept: r.kept.map((k) => ({ epoch: k.epoch, reasons: k.reasons })),
    segmentsDeleted: r.segmentsDeleted,
    stagedDeleted: r.stagedDeleted,
    bytesFreed: r.bytesFreed,
    sweepSkipped: r.sweepSkipped === '' ? null : r.sweepSkipped,
  };
}

/** An IncompleteMark: why a queue's part of a checkpoint may lack messages the broker confirmed. */
export function markJson(m: IncompleteMark) {
  return { epoch: m.epoch, reason: m.reason, detectedAt: iso(m.detectedAtMs), afterOffset: m.afterOffset };
}

export function manifestJson(m: CheckpointManifest) {
  return {
    id: String(m.epoch),
    epoch: m.epoch,
    parentEpoch: m.parentEpoch,
    full: m.full,
    formatVersion: m.formatVersion,
    startedAt: iso(m.startedAtMs),
    committedAt: iso(m.committedAtMs),
    leaderToken: m.leaderToken,
    coordinator: m.coordinatorId,
    messages: m.messages,
    bodyBytes: m.bodyBytes,
    queues: m.queues.map((q) => ({
      vhost: q.definition?.vhost ?? '',
      name: q.definition?.name ?? '',
      type: q.definition?.type ?? '',
      journal: q.journal,
      startOffset: q.startOffset,
      cutOffset: q.cutOffset,
      messages: q.messages,
      bodyBytes: q.bodyBytes,
      segments: storedSegmentCount(q.segments),
      baseEpoch: q.baseEpoch,
      worker: q.workerId,
      bindings: (q.definition?.bindings ?? []).map((b) => ({ source: b.source, routingKey: b.routingKey })),
      incomplete: q.incomplete.map(markJson),
      head: {
        known: q.headKnown,
        offset: headOf(q).offset,
        messagesBefore: headOf(q).messages,
        held: q.headKnown ? contentsMessages(q) : null,
        possiblyAcked: q.possiblyAcked,
        predating: q.predating,
        basis: q.headBasis,
      },
      historyFrom: historyOf(q).offset,
      outsideCut: outsideJson(q.outsideCut),
    })),
  };
}

export function statusJson(s: StatusReply) {
  return {
    coordinator: s.coordinatorId,
    leader: s.leader,
    leaderToken: s.leaderToken,
    leaderId: s.leaderId || null,
    leaderAddress: s.leaderAddress || null,
    store: s.store,
    intervalMs: s.intervalMs,
    protectedQueues: s.protectedQueues,
    latestCheckpoint: s.latestCheckpoint > 0 ? { id: String(s.latestCheckpoint), epoch: s.latestCheckpoint, committedAt: iso(s.latestCheckpointAtMs) } : null,
    rounds: { committed: s.roundsCommitted, aborted: s.roundsAborted },
    lastRound: s.lastRound
      ? {
          id: String(s.lastRound.epoch),
          epoch: s.lastRound.epoch,
          outcome: outcomeName(s.lastRound.outcome),
          reason: s.lastRound.reason,
          startedAt: iso(s.lastRound.startedAtMs),
          durationMs: s.lastRound.durationMs,
        }
      : null,
    workers: s.workers.map((w) => ({
      id: w.workerId,
      address: w.address,
      queues: w.queues,
      reachable: w.reachable,
      error: w.error || null,
      lagMessages: w.lagMessages,
      maxLagSeconds: w.maxLagSeconds,
    })),
    captureLag: s.captureLag.map((q) => ({ vhost: q.vhost, queue: q.queue, worker: q.workerId, lagMessages: q.lagMessages, lagSeconds: q.lagSeconds })),
    coverageGaps: s.coverageGaps.map((g) => ({
      vhost: g.vhost,
      queue: g.queue,
      sourcePublished: g.sourcePublished,
      captured: g.captured,
      uncaptured: g.uncaptured,
      since: iso(g.sinceMs),
      reason: g.reason,
    })),
    coverageUnchecked: s.coverageUnchecked,
    strictRounds: s.strictRounds,
    outsideCut: s.outsideCut.map((q) => ({ vhost: q.vhost, queue: q.queue, sinceEpoch: q.sinceEpoch, since: iso(q.sinceMs), reason: q.reason })),
    incompleteQueues: s.incompleteQueues.map((q) => ({
      vhost: q.vhost,
      queue: q.queue,
      sinceEpoch: q.sinceEpoch,
      detectedAt: iso(q.detectedAtMs),
      reason: q.reason,
      marks: q.marks,
    })),
    contentsQueues: s.contentsQueues.map((q) => ({ vhost: q.vhost, queue: q.queue, predating: q.predating, headKnown: q.headKnown, reason: q.reason })),
    firehose: s.firehose.map((f) => ({
      vhost: f.vhost,
      activeWorker: f.activeWorker || null,
      standbyWorkers: f.standbyWorkers,
      backlog: f.backlog,
      error: f.error || null,
    })),
    unprotectedCount: s.unprotectedCount,
    unprotected: s.unprotected.map((u) => ({ vhost: u.vhost, queue: u.queue, reason: u.reason })),
    brokerNodes: s.brokerNodes.map((n) => ({
      name: n.name,
      fdUsed: n.fdUsed,
      fdTotal: n.fdTotal,
      memUsed: n.memUsed,
      memLimit: n.memLimit,
      memAlarm: n.memAlarm,
      diskFree: n.diskFree,
      diskFreeLimit: n.diskFreeLimit,
      diskFreeAlarm: n.diskFreeAlarm,
    })),
    journalBoundBytes: s.journalBoundBytes || null,
    journalPressure: s.journalPressure || null,
  };
}

export function restoreEventJson(e: RestoreEvent) {
  switch (e.event?.$case) {
    case 'plan': {
      const p = e.event.value;
      return {
        type: 'plan',
        restoreId: p.restoreId,
        checkpoint: String(p.checkpoint),
        dryRun: p.dryRun,
        messages: p.messages,
        bodyBytes: p.bodyBytes,
        estimatedMs: p.estimatedMs > 0 ? p.estimatedMs : null,
        estimateBasis: p.estimateBasis || null,
        resumed: p.resumed,
        mode: p.mode || null,
        concurrency: p.concurrency,
        rateLimit: p.rateLimit > 0 ? p.rateLimit : null,
        queues: p.queues.map((q) => ({
          source: { vhost: q.sourceVhost, queue: q.sourceQueue },
          target: { vhost: q.targetVhost, queue: q.targetQueue },
          type: q.type,
          messages: q.messages,
          bodyBytes: q.bodyBytes,
          segments: q.segments,
          worker: q.workerId,
          bind: q.bind,
          alreadyConfirmed: q.alreadyConfirmed,
          finished: q.finished,
          targetExists: q.targetExists,
          conflict: q.conflict || null,
          incomplete: q.incomplete.map(markJson),
          restoreFrom: q.restoreFrom,
          restoreFromReason: q.restoreFromReason,
          possiblyAcked: q.possiblyAcked,
          predating: q.predating,
          outsideCut: outsideJson(q.outsideCut),
        })),
      };
    }
    case 'progress': {
      const p = e.event.value;
      return {
        type: 'progress',
        source: { vhost: p.sourceVhost, queue: p.sourceQueue },
        target: { vhost: p.targetVhost, queue: p.targetQueue },
        worker: p.workerId,
        confirmed: p.confirmed,
        total: p.total,
        bodyBytes: p.bodyBytes,
        skipped: p.skipped,
        done: p.done,
        error: p.error || null,
      };
    }
    case 'done': {
      const d = e.event.value;
      return {
        type: 'done',
        restoreId: d.restoreId,
        messages: d.messages,
        queues: d.queues,
        failedQueues: d.failedQueues,
        durationMs: d.durationMs,
        // A coordinator from before `state` existed sends none: derive it the way it would have.
        state: d.state || (d.failedQueues > 0 ? 'failed' : 'done'),
      };
    }
    default:
      return { type: 'unknown' };
  }
}

export function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

export function bytes(n: number): string {
  return formatBytes(n);
}

export function restoreSummaryJson(r: RestoreSummary) {
  return {
    restoreId: r.restoreId,
    checkpoint: String(r.checkpoint),
    state: r.state,
    createdAt: iso(r.createdAtMs),
    updatedAt: iso(r.updatedAtMs),
    queues: r.queues,
    doneQueues: r.doneQueues,
    failedQueues: r.failedQueues,
    messages: r.messages,
    confirmed: r.confirmed,
  };
}
