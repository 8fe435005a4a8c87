/**
 * One checkpoint round as a pure state machine: it takes events (fence published, votes,
 * deadline, decision recorded, manifest written) and returns the effects the coordinator must
 * carry out. No sockets, clocks or brokers here, so tests can drive every interleaving.
 *
 * Two-phase commit with presumed abort:
 *   fence → PREPARE all → some queue YES ? record COMMIT → write manifest → send COMMIT
 *                                        : record ABORT → send ABORT
 * Invariants this machine protects:
 * - I1 (G1, G8) A queue is inside a checkpoint's cut only when the worker it was asked of voted
 *   YES for it; every other queue of the round (NO, error, deadline, no worker) is outside: carried
 *   from its entry in the parent checkpoint, marked with why and since when, or left out when no
 *   checkpoint holds it yet (outside-cut.ts). COMMIT needs at least one queue inside. With
 *   `strict`, anything short of every queue inside aborts, as before G8.
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
import { type CommitRecord, NotFoundError, type OutsideQueue, type QueueMark, queueKey, splitQueueKey } from '../core/index.js';
import { carriedEntry, describeOutside, outsideIds, outsideQueues, type QueueFailures } from './outside-cut.js';

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
  /**
   * All or nothing: any queue that cannot take part aborts the round (TIDEMARK_STRICT_ROUNDS).
   * @default false: such a queue is carried from its last good cut, outside this checkpoint's cut (G8)
   */
  strict?: boolean;
}

/** What a round takes over from a queue's entry in the parent checkpoint. */
export interface PriorEntry {
  cutOffset: number;
  incomplete: IncompleteMark[];
  /** The whole entry: carried forward, outside the cut, if the queue cannot take part (G8). */
  entry?: QueueCheckpoint;
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
 * `parentEntry` gives a queue's entry in the parent checkpoint (`commit.parentEpoch`): a queue the
 * commit record lists outside the cut is carried from it (G8); a partition's entry of such a queue
 * is not used.
 */
export function assembleManifest(
  epoch: number,
  commit: CommitRecord,
  committedAtMs: number,
  partitions: VotedPartition[],
  lookup?: (vhost: string, queue: string) => RoundQueue | undefined,
  parentEntry?: (vhost: string, queue: string) => QueueCheckpoint | undefined,
): CheckpointManifest {
  const queues: QueueCheckpoint[] = [];
  const marksOf = new Map<string, IncompleteMark[]>();
  for (const { vhost, queue, mark } of commit.marks ?? []) {
    const id = queueKey(vhost, queue);
    marksOf.set(id, [...(marksOf.get(id) ?? []), mark]);
  }
  const outside = outsideIds(commit.outside);
  for (const o of commit.outside ?? []) {
    if (o.sinceEpoch === 0) continue;
    const parent = parentEntry?.(o.vhost, o.queue);
    if (!parent) {
      throw new NotFoundError(`checkpoint ${commit.parentEpoch} holds no entry for ${o.vhost}/${o.queue}, which checkpoint ${epoch} carries forward from it`);
    }
    queues.push(carriedEntry(parent, o, marksOf.get(queueKey(o.vhost, o.queue)) ?? []));
  }
  for (const partition of partitions) {
    for (const q of partition.queues) {
      if (outside.has(queueKey(q.definition!.vhost, q.definition!.name))) continue;
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
export function commitRecordOf(plan: RoundPlan, fencedAtMs: number, votes: Iterable<PrepareReply>, restarted: RestartedVhost[] = [], failures: QueueFailures = new Map()): CommitRecord {
  const marks: QueueMark[] = [];
  const reasons = new Map(restarted.map((r) => [r.vhost, r.reason]));
  const outside = outsideQueues(failures, plan.parentEpoch, fencedAtMs, (id) => plan.prior?.get(id)?.entry);
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
    ...(outside.length > 0 ? { outside } : {}),
  };
}

export type RoundEffect =
  | { type: 'publish-fences'; epoch: number; vhosts: string[] }
  | { type: 'prepare'; epoch: number; participant: RoundParticipant }
  | { type: 'record-decision'; epoch: number; decision: Outcome; reason: string; commit?: CommitRecord }
  | { type: 'write-manifest'; manifest: CheckpointManifest }
  /**
   * `counted`, with COMMIT when some queue is outside the cut: per worker, the queues taken from
   * its vote (none: the worker is told ABORT). Undefined: every vote was taken whole.
   */
  | { type: 'send-decision'; epoch: number; decision: Outcome; workerIds: string[]; counted?: Map<string, QueueRef[]> }
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
  /** YES votes, by worker. */
  private readonly votes = new Map<string, PrepareReply>();
  /** Participants whose outcome is known: a vote, a failed call, or the deadline. */
  private readonly heard = new Set<string>();
  /** Queues that could not take part (G8), in the order found. */
  private readonly failures: QueueFailures = new Map();
  /** Why, worker by worker, for the round's reason. */
  private readonly problems: string[] = [];
  private fencedAtMs = 0;
  private restarted: RestartedVhost[] = [];

  constructor(readonly plan: RoundPlan) {}

  get epoch(): number {
    return this.plan.epoch;
  }

  /** The queues outside the cut of a committed round (G8), as recorded with its COMMIT. */
  get outside(): OutsideQueue[] {
    return this.decision === 'committed' ? (this.commitRecord().outside ?? []) : [];
  }

  handle(event: RoundEvent): RoundEffect[] {
    switch (event.type) {
      case 'start':
        if (this.state !== 'new') return [];
        if (this.plan.queues.size === 0) return this.decide('aborted', 'no protected queues: set TIDEMARK_PROTECT to the queues to back up');
        if (this.plan.participants.length === 0) return this.decide('aborted', 'no live workers: start at least one "tidemark worker"');
        {
          const assigned = this.plan.participants.flatMap((p) => p.queues);
          // Every queue asked of a worker must be one the round covers, or its manifest entry has
          // no definition to carry.
          const stray = assigned.map((q) => queueKey(q.vhost, q.queue)).filter((id) => !this.plan.queues.has(id));
          if (stray.length > 0) return this.decide('aborted', `workers were assigned queues outside the round: ${describe(stray)}`);
          const uncovered = this.uncoveredQueues(assigned);
          if (uncovered.length > 0) {
            const why = this.plan.unassignedWhy ? ` (${this.plan.unassignedWhy})` : '';
            const problem = `no worker was assigned ${describe(uncovered)}${why}`;
            // A queue no worker took cannot stop the others (G8), unless the round is strict or
            // no queue is left to take part.
            if (this.plan.strict || uncovered.length === this.plan.queues.size) return this.decide('aborted', problem);
            this.problems.push(problem);
            for (const id of uncovered) this.fail(id, `no worker was assigned it${why}`);
          }
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
      case 'prepare-failed': {
        if (this.state !== 'preparing') return [];
        const participant = this.participant(event.workerId);
        if (!participant || this.alreadyHeard(event.workerId)) return [];
        return this.workerFailed(participant, `worker ${event.workerId} did not vote: ${event.reason}`);
      }
      case 'deadline':
        if (this.state === 'fencing' || this.state === 'preparing') {
          const missing = this.plan.participants.filter((p) => !this.heard.has(p.workerId));
          const problem = `prepare deadline passed without a vote from ${missing.map((p) => p.workerId).join(', ') || 'the fence publisher'}`;
          if (this.plan.strict || this.state === 'fencing') return this.decide('aborted', problem);
          this.problems.push(problem);
          for (const p of missing) {
            this.heard.add(p.workerId);
            for (const q of p.queues) this.fail(queueKey(q.vhost, q.queue), `prepare deadline passed without a vote from worker ${p.workerId}`);
          }
          return this.decideIfHeard();
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

  /**
   * A participant's first answer stands (its PREPARE is idempotent). Strict rounds weigh every
   * answer, as before G8: a later NO or bad vote from the same worker still aborts.
   */
  private alreadyHeard(workerId: string): boolean {
    return !this.plan.strict && this.heard.has(workerId);
  }

  private participant(workerId: string): RoundParticipant | undefined {
    return this.plan.participants.find((p) => p.workerId === workerId);
  }

  private onVote(workerId: string, reply: PrepareReply): RoundEffect[] {
    if (this.state !== 'preparing') return [];
    const participant = this.participant(workerId);
    if (!participant || this.alreadyHeard(workerId)) return [];
    if (reply.vote !== Vote.VOTE_YES) {
      // Per queue when the worker said why (a worker of an older version gives one reason).
      const why = new Map(reply.failed.map((f) => [queueKey(f.vhost, f.queue), f.reason]));
      return this.workerFailed(participant, reply.reason || `worker ${workerId} voted NO`, why);
    }
    const problem = this.checkYes(participant, reply);
    if (problem) return this.workerFailed(participant, `worker ${workerId} voted YES but ${problem}`);
    // Per queue: a part on a base that is not visible, or a queue the worker could not prepare.
    const failed = [
      ...reply.queues.flatMap((q) => {
        const trouble = this.checkPart(q);
        return trouble ? [{ id: queueKey(q.definition!.vhost, q.definition!.name), shown: `${q.definition!.vhost}/${q.definition!.name} ${trouble}`, reason: `worker ${workerId} voted YES but ${trouble}` }] : [];
      }),
      ...reply.failed.map((f) => ({ id: queueKey(f.vhost, f.queue), shown: `${f.vhost}/${f.queue}: ${f.reason}`, reason: `worker ${workerId}: ${f.reason}` })),
    ];
    if (failed.length > 0) {
      const problem = `worker ${workerId} could not prepare ${failed.map((f) => f.shown).join('; ')}`;
      if (this.plan.strict) return this.decide('aborted', problem);
      this.problems.push(problem);
      for (const f of failed) this.fail(f.id, f.reason);
    }
    this.heard.add(workerId);
    this.votes.set(workerId, reply);
    return this.decideIfHeard();
  }

  /** Every queue of `participant` could not take part: the round aborts if strict, else they are outside. */
  private workerFailed(participant: RoundParticipant, problem: string, why = new Map<string, string>()): RoundEffect[] {
    if (this.plan.strict) return this.decide('aborted', problem);
    this.heard.add(participant.workerId);
    this.problems.push(problem);
    for (const q of participant.queues) {
      const id = queueKey(q.vhost, q.queue);
      const reason = why.get(id);
      this.fail(id, reason === undefined ? problem : `worker ${participant.workerId}: ${reason}`);
    }
    return this.decideIfHeard();
  }

  private fail(id: string, reason: string): void {
    if (this.failures.has(id)) return;
    const q = this.plan.queues.get(id);
    const { vhost, queue } = q ? { vhost: q.definition.vhost, queue: q.definition.name } : splitQueueKey(id);
    this.failures.set(id, { vhost, queue, reason });
  }

  /**
   * Once every participant is heard: COMMIT when some queue is inside the cut (a YES part not
   * failed), else ABORT with every problem met.
   */
  private decideIfHeard(): RoundEffect[] {
    if (this.heard.size < this.plan.participants.length) return [];
    const inside = this.countedQueues();
    if (inside === 0) return this.decide('aborted', this.problems.length > 0 ? this.problems.join('; ') : 'no queue could take part');
    return this.decide('committed', this.failures.size > 0 ? describeOutside(this.commitRecord().outside ?? []) : '');
  }

  private countedQueues(): number {
    let n = 0;
    for (const reply of this.votes.values()) for (const q of reply.queues) if (!this.failures.has(queueKey(q.definition!.vhost, q.definition!.name))) n += 1;
    return n;
  }

  /**
   * A YES vote must account for exactly the queues asked, each once: reported with its part, or
   * listed as failed. Anything else makes the whole vote unusable.
   */
  private checkYes(participant: RoundParticipant, reply: PrepareReply): string | undefined {
    const asked = new Set(participant.queues.map((q) => queueKey(q.vhost, q.queue)));
    const answered = new Set<string>();
    const names = [
      ...reply.queues.map((q) => ({ vhost: q.definition?.vhost ?? '', name: q.definition?.name ?? '' })),
      ...reply.failed.map((f) => ({ vhost: f.vhost, name: f.queue })),
    ];
    for (const { vhost, name } of names) {
      const id = queueKey(vhost, name);
      if (!asked.has(id)) return `reported queue ${vhost}/${name} it was not asked for`;
      if (answered.has(id)) return `reported queue ${vhost}/${name} twice`;
      answered.add(id);
    }
    const missing = [...asked].filter((id) => !answered.has(id));
    if (missing.length > 0) return `left out ${missing.length} queue(s) it was asked for`;
    return undefined;
  }

  /** What is wrong with one queue's part of a YES vote, if anything: it must sit on a visible base. */
  private checkPart(q: QueueCheckpoint): string | undefined {
    if (q.baseEpoch !== 0 && !this.plan.isVisible(q.baseEpoch)) return `based it on checkpoint ${q.baseEpoch}, which is not visible`;
    if (q.cutOffset < q.startOffset) return `reported cut ${q.cutOffset} before start ${q.startOffset} for ${q.definition?.name}`;
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
    const counted = outcome === 'committed' && this.failures.size > 0 ? this.counted() : undefined;
    return [
      { type: 'send-decision', epoch: this.epoch, decision: outcome, workerIds: this.plan.participants.map((p) => p.workerId), ...(counted ? { counted } : {}) },
      { type: 'finish', epoch: this.epoch, outcome, reason: this.reason },
    ];
  }

  /** Per participant, the queues of its vote inside the cut. */
  private counted(): Map<string, QueueRef[]> {
    const counted = new Map<string, QueueRef[]>();
    for (const p of this.plan.participants) {
      const reply = this.votes.get(p.workerId);
      const refs = (reply?.queues ?? [])
        .filter((q) => !this.failures.has(queueKey(q.definition!.vhost, q.definition!.name)))
        .map((q) => ({ vhost: q.definition!.vhost, queue: q.definition!.name, census: undefined }));
      counted.set(p.workerId, refs);
    }
    return counted;
  }

  private commitRecord(): CommitRecord {
    // A vote none of whose queues is inside the cut adds nothing to the checkpoint.
    const votes = [...this.votes.values()].filter((v) => v.queues.some((q) => !this.failures.has(queueKey(q.definition!.vhost, q.definition!.name))));
    return commitRecordOf(this.plan, this.fencedAtMs, votes, this.restarted, this.failures);
  }

  private buildManifest(committedAtMs: number): CheckpointManifest {
    const commit = this.commitRecord();
    const votes = [...this.votes.values()].map((v) => ({ workerId: v.workerId, queues: v.queues }));
    return assembleManifest(
      this.epoch,
      commit,
      committedAtMs,
      votes,
      (vhost, queue) => this.plan.queues.get(queueKey(vhost, queue)),
      (vhost, queue) => this.plan.prior?.get(queueKey(vhost, queue))?.entry,
    );
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
