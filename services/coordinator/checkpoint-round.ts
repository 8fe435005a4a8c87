/**
 * One checkpoint round as a pure state machine: it takes events (fence published, votes,
 * deadline, decision recorded, manifest written) and returns the effects the coordinator must
 * carry out. No sockets, clocks or brokers here, so tests can drive every interleaving.
 *
 * Two-phase commit with presumed abort:
 *   fence → PREPARE all → all YES ? record COMMIT → write manifest → send COMMIT
 *                                 : record ABORT → send ABORT
 * Invariants this machine protects:
 * - I1 (G1) COMMIT is decided only when every queue of the round is covered by a YES vote of the
 *   worker it was asked of; anything else (NO, error, missing queue, deadline) aborts.
 * - I2 The decision is recorded durably before anyone hears it and before the manifest is
 *   written, so a new leader never contradicts it.
 * - I3 The manifest is written last (after the decision) and is the only thing that makes the
 *   checkpoint visible; workers learn COMMIT only after it has landed.
 * - I4 A decided round never changes its decision; late votes are ignored.
 * - I5 (G4) A queue whose history may lack messages the broker confirmed (a broker restart seen
 *   after this round's fence, broker-continuity.ts) is marked in the checkpoint, and a queue
 *   marked in the parent checkpoint stays marked: a checkpoint never presents it as complete.
 */
import type { CheckpointManifest, ExchangeDefinition, IncompleteMark, QueueCheckpoint, QueueDefinition } from '../gen/tidemark/v1/store.js';
import { Vote, type PrepareReply, type QueueRef } from '../gen/tidemark/v1/worker.js';
import { type CommitRecord, type QueueMark, queueKey } from '../core/index.js';

export interface RoundParticipant {
  workerId: string;
  queues: QueueRef[];
}

export interface RoundQueue {
  definition: QueueDefinition;
  journal: string;
}

export interface RoundPlan {
  epoch: number;
  /** Unique per round (epoch numbers can repeat if Redis is lost); carried by the fences. */
  roundId: string;
  leaderToken: number;
  coordinatorId: string;
  startedAtMs: number;
  vhosts: string[];
  fenceExchange: string;
  participants: RoundParticipant[];
  /** Every queue the round must cover, by queue id. */
  queues: Map<string, RoundQueue>;
  exchanges: ExchangeDefinition[];
  /** The latest visible checkpoint before this round, 0 if none. */
  parentEpoch: number;
  /** Whether an epoch is a visible checkpoint (a worker's base must be one). */
  isVisible: (epoch: number) => boolean;
  /**
   * Each queue's entry in the parent checkpoint, by queue id: its cut (where a new mark's hole
   * begins) and its marks, which this checkpoint keeps (I5). Absent: no parent entries.
   */
  prior?: Map<string, PriorEntry>;
  /**
   * Queues whose journal was renewed since the parent checkpoint (discovery.ts), with what
   * happened: their entries start afresh from the new journal and carry a new mark instead of the
   * parent's (whose offsets belong to the old journal).
   */
  renewed?: Map<string, string>;
  /** Why queues may have no worker (the last assignment pass's failures), for an abort's reason. */
  unassignedWhy?: string;
}

/** What a round takes over from a queue's entry in the parent checkpoint. */
export interface PriorEntry {
  cutOffset: number;
  incomplete: IncompleteMark[];
}

/** A vhost whose broker restarted before this round's fence was confirmed. */
export interface RestartedVhost {
  vhost: string;
  reason: string;
}

export type Outcome = 'committed' | 'aborted';

/** One worker's part of a committed round: the queue entries it voted (or staged). */
export interface VotedPartition {
  workerId: string;
  queues: QueueCheckpoint[];
}

/**
 * Assembles the checkpoint manifest of a committed round. `lookup` gives the coordinator's
 * discovered definition and journal of a queue; without it the partitions' own are used.
 */
export function assembleManifest(
  epoch: number,
  commit: CommitRecord,
  committedAtMs: number,
  partitions: VotedPartition[],
  lookup?: (vhost: string, queue: string) => RoundQueue | undefined,
): CheckpointManifest {
  const queues: QueueCheckpoint[] = [];
  const marksOf = new Map<string, IncompleteMark[]>();
  for (const { vhost, queue, mark } of commit.marks ?? []) {
    const id = queueKey(vhost, queue);
    marksOf.set(id, [...(marksOf.get(id) ?? []), mark]);
  }
  for (const partition of partitions) {
    for (const q of partition.queues) {
      const planned = lookup?.(q.definition!.vhost, q.definition!.name);
      // The coordinator's discovered definition is the authority on the queue's shape.
      queues.push({
        ...q,
        definition: planned?.definition ?? q.definition,
        journal: planned?.journal ?? q.journal,
        workerId: partition.workerId,
        incomplete: marksOf.get(queueKey(q.definition!.vhost, q.definition!.name)) ?? [],
      });
    }
  }
  queues.sort((a, b) => compareQueues(a.definition!, b.definition!));
  return {
    formatVersion: 1,
    epoch,
    parentEpoch: commit.parentEpoch,
    full: queues.every((q) => q.baseEpoch === 0),
    startedAtMs: commit.startedAtMs,
    committedAtMs,
    leaderToken: commit.leaderToken,
    coordinatorId: commit.coordinatorId,
    fences: commit.vhosts.map((vhost) => ({ vhost, exchange: commit.fenceExchange, publishedAtMs: commit.fencedAtMs })),
    exchanges: commit.exchanges,
    queues,
    messages: queues.reduce((n, q) => n + q.messages, 0),
    bodyBytes: queues.reduce((n, q) => n + q.bodyBytes, 0),
    roundId: commit.roundId,
  };
}

/**
 * The commit record of a round: its plan, when its fences were confirmed, its YES votes, and the
 * marks of its queues: those of the parent checkpoint, plus a new one for every queue of a vhost
 * whose broker restarted before the fence; a renewed queue has only the mark of its renewal.
 */
export function commitRecordOf(plan: RoundPlan, fencedAtMs: number, votes: Iterable<PrepareReply>, restarted: RestartedVhost[] = []): CommitRecord {
  const marks: QueueMark[] = [];
  const reasons = new Map(restarted.map((r) => [r.vhost, r.reason]));
  for (const [id, q] of plan.queues) {
    const { vhost, name } = q.definition;
    const renewed = plan.renewed?.get(id);
    const prior = renewed === undefined ? plan.prior?.get(id) : undefined;
    if (renewed !== undefined) marks.push({ vhost, queue: name, mark: { epoch: plan.epoch, reason: renewed, detectedAtMs: fencedAtMs, afterOffset: 0 } });
    for (const mark of prior?.incomplete ?? []) marks.push({ vhost, queue: name, mark });
    const reason = reasons.get(vhost);
    if (reason !== undefined) {
      marks.push({ vhost, queue: name, mark: { epoch: plan.epoch, reason, detectedAtMs: fencedAtMs, afterOffset: prior?.cutOffset ?? 0 } });
    }
  }
  return {
    roundId: plan.roundId,
    parentEpoch: plan.parentEpoch,
    startedAtMs: plan.startedAtMs,
    fencedAtMs,
    leaderToken: plan.leaderToken,
    coordinatorId: plan.coordinatorId,
    fenceExchange: plan.fenceExchange,
    vhosts: plan.vhosts,
    exchanges: plan.exchanges,
    partitions: [...votes].map((v) => ({ workerId: v.workerId, key: v.partitionKey, sha256: v.partitionSha256 })),
    ...(marks.length > 0 ? { marks } : {}),
  };
}

export type RoundEffect =
  | { type: 'publish-fences'; epoch: number; vhosts: string[] }
  | { type: 'prepare'; epoch: number; participant: RoundParticipant }
  | { type: 'record-decision'; epoch: number; decision: Outcome; reason: string; commit?: CommitRecord }
  | { type: 'write-manifest'; manifest: CheckpointManifest }
  | { type: 'send-decision'; epoch: number; decision: Outcome; workerIds: string[] }
  | { type: 'finish'; epoch: number; outcome: Outcome; reason: string };

export type RoundEvent =
  | { type: 'start' }
  | { type: 'fences-published'; atMs: number; restarted?: RestartedVhost[] }
  | { type: 'fences-failed'; reason: string }
  | { type: 'vote'; workerId: string; reply: PrepareReply }
  | { type: 'prepare-failed'; workerId: string; reason: string }
  | { type: 'deadline' }
  /** The leader is stopping: a round not yet decided aborts, as at its deadline; a decided one goes on. */
  | { type: 'stopping'; reason: string }
  | { type: 'decision-recorded'; atMs: number }
  | { type: 'manifest-written' };

export type RoundState = 'new' | 'fencing' | 'preparing' | 'recording' | 'writing-manifest' | 'done';

export class CheckpointRound {
  state: RoundState = 'new';
  decision: Outcome | undefined;
  reason = '';
  private readonly votes = new Map<string, PrepareReply>();
  private fencedAtMs = 0;
  private restarted: RestartedVhost[] = [];

  constructor(readonly plan: RoundPlan) {}

  get epoch(): number {
    return this.plan.epoch;
  }

  handle(event: RoundEvent): RoundEffect[] {
    switch (event.type) {
      case 'start':
        if (this.state !== 'new') return [];
        if (this.plan.queues.size === 0) return this.decide('aborted', 'no protected queues: set TIDEMARK_PROTECT to the queues to back up');
        if (this.plan.participants.length === 0) return this.decide('aborted', 'no live workers: start at least one "tidemark worker"');
        {
          const assigned = this.plan.participants.flatMap((p) => p.queues);
          const uncovered = this.uncoveredQueues(assigned);
          if (uncovered.length > 0) {
            const why = this.plan.unassignedWhy ? ` (${this.plan.unassignedWhy})` : '';
            return this.decide('aborted', `no worker was assigned ${describe(uncovered)}${why}`);
          }
          // Every queue asked of a worker must be one the round covers, or its manifest entry has
          // no definition to carry.
          const stray = assigned.map((q) => queueKey(q.vhost, q.queue)).filter((id) => !this.plan.queues.has(id));
          if (stray.length > 0) return this.decide('aborted', `workers were assigned queues outside the round: ${describe(stray)}`);
        }
        this.state = 'fencing';
        return [{ type: 'publish-fences', epoch: this.epoch, vhosts: this.plan.vhosts }];
      case 'fences-published':
        if (this.state !== 'fencing') return [];
        this.fencedAtMs = event.atMs;
        this.restarted = event.restarted ?? [];
        this.state = 'preparing';
        return this.plan.participants.map((participant) => ({ type: 'prepare', epoch: this.epoch, participant }) as RoundEffect);
      case 'fences-failed':
        if (this.state !== 'fencing') return [];
        return this.decide('aborted', `fence could not be published: ${event.reason}`);
      case 'vote':
        return this.onVote(event.workerId, event.reply);
      case 'prepare-failed':
        if (this.state !== 'preparing') return [];
        return this.decide('aborted', `worker ${event.workerId} did not vote: ${event.reason}`);
      case 'deadline':
        if (this.state === 'fencing' || this.state === 'preparing') {
          const missing = this.plan.participants.filter((p) => !this.votes.has(p.workerId)).map((p) => p.workerId);
          return this.decide('aborted', `prepare deadline passed without a vote from ${missing.join(', ') || 'the fence publisher'}`);
        }
        return [];
      case 'stopping':
        if (this.state === 'fencing' || this.state === 'preparing') return this.decide('aborted', event.reason);
        return [];
      case 'decision-recorded':
        if (this.state !== 'recording') return [];
        if (this.decision === 'committed') {
          this.state = 'writing-manifest';
          return [{ type: 'write-manifest', manifest: this.buildManifest(event.atMs) }];
        }
        return this.finish();
      case 'manifest-written':
        if (this.state !== 'writing-manifest') return [];
        return this.finish();
    }
  }

  private onVote(workerId: string, reply: PrepareReply): RoundEffect[] {
    if (this.state !== 'preparing') return [];
    const participant = this.plan.participants.find((p) => p.workerId === workerId);
    if (!participant) return [];
    if (reply.vote !== Vote.VOTE_YES) {
      return this.decide('aborted', reply.reason || `worker ${workerId} voted NO`);
    }
    const problem = this.checkYes(participant, reply);
    if (problem) return this.decide('aborted', `worker ${workerId} voted YES but ${problem}`);
    this.votes.set(workerId, reply);
    if (this.votes.size < this.plan.participants.length) return [];
    return this.decide('committed', '');
  }

  /** A YES vote must cover exactly the queues asked, each on a visible base. */
  private checkYes(participant: RoundParticipant, reply: PrepareReply): string | undefined {
    const asked = new Set(participant.queues.map((q) => queueKey(q.vhost, q.queue)));
    const answered = new Set<string>();
    for (const q of reply.queues) {
      const id = queueKey(q.definition?.vhost ?? '', q.definition?.name ?? '');
      if (!asked.has(id)) return `reported queue ${q.definition?.vhost}/${q.definition?.name} it was not asked for`;
      if (answered.has(id)) return `reported queue ${q.definition?.vhost}/${q.definition?.name} twice`;
      if (q.baseEpoch !== 0 && !this.plan.isVisible(q.baseEpoch)) {
        return `based ${q.definition?.vhost}/${q.definition?.name} on checkpoint ${q.baseEpoch}, which is not visible`;
      }
      if (q.cutOffset < q.startOffset) return `reported cut ${q.cutOffset} before start ${q.startOffset} for ${q.definition?.name}`;
      answered.add(id);
    }
    const missing = [...asked].filter((id) => !answered.has(id));
    if (missing.length > 0) return `left out ${missing.length} queue(s) it was asked for`;
    return undefined;
  }

  private uncoveredQueues(assigned: QueueRef[]): string[] {
    const covered = new Set(assigned.map((q) => queueKey(q.vhost, q.queue)));
    return [...this.plan.queues.keys()].filter((id) => !covered.has(id));
  }

  private decide(decision: Outcome, reason: string): RoundEffect[] {
    if (this.decision) return [];
    this.decision = decision;
    this.reason = reason;
    this.state = 'recording';
    const commit = decision === 'committed' ? this.commitRecord() : undefined;
    return [{ type: 'record-decision', epoch: this.epoch, decision, reason, ...(commit ? { commit } : {}) }];
  }

  private finish(): RoundEffect[] {
    this.state = 'done';
    const outcome = this.decision!;
    return [
      { type: 'send-decision', epoch: this.epoch, decision: outcome, workerIds: this.plan.participants.map((p) => p.workerId) },
      { type: 'finish', epoch: this.epoch, outcome, reason: this.reason },
    ];
  }

  private commitRecord(): CommitRecord {
    return commitRecordOf(this.plan, this.fencedAtMs, this.votes.values(), this.restarted);
  }


  private buildManifest(committedAtMs: number): CheckpointManifest {
    const votes = [...this.votes.values()].map((v) => ({ workerId: v.workerId, queues: v.queues }));
    return assembleManifest(this.epoch, this.commitRecord(), committedAtMs, votes, (vhost, queue) => this.plan.queues.get(queueKey(vhost, queue)));
  }

}

/** Byte order, not locale order: the manifest must not depend on where it was written. */
function compareQueues(a: QueueDefinition, b: QueueDefinition): number {
  const byte = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
  return byte(a.vhost, b.vhost) || byte(a.name, b.name);
}

function describe(ids: string[]): string {
  const names = ids.slice(0, 5).map((id) => id.replace('\u0000', '/'));
  return ids.length > 5 ? `${names.join(', ')} and ${ids.length - 5} more` : names.join(', ');
}
