/**
 * What a worker decides as a participant of checkpoint rounds (steps 2 to 4 of the protocol),
 * without any I/O: a state machine that worker.ts drives, and the simulation (test/sim) drives
 * the very same way, so a bug here is a bug there.
 *
 * - the token floor: a call whose leader token is below the newest seen comes from a deposed
 *   leader and is refused (StaleLeaderError); a restarted worker starts from the newest token
 *   issued so far;
 * - PREPARE is idempotent per round id: a round being prepared or voted YES in is the same round
 *   (its caller answers every repeat with the same vote, staged once); a NO is not kept, so a
 *   repeat tries again; a PREPARE of a round already decided gets NO (its cut may already be a
 *   base, or forgotten);
 * - a decision, told or asked for, ends the round; the newest DECIDED_KEPT decided round ids are
 *   remembered for the check above;
 * - a round voted YES in more than INQUIRY_AFTER_LEASES lease times ago and still undecided is
 *   asked about (decision-inquiry.ts answers), every `inquiryIntervalMs`.
 *
 * `T` is what the caller keeps with a round while preparing it (the real worker: the promise of
 * its vote).
 */
import { queueKey, StaleLeaderError } from '../core/index.js';
import type { QueueCheckpoint } from '../gen/tidemark/v1/store.js';
import { Decision, type DecideRequest, type PrepareRequest, type QueueFailure } from '../gen/tidemark/v1/worker.js';

/** Decided round ids remembered, so a late or repeated PREPARE of one is refused. */
export const DECIDED_KEPT = 256;

/** A round voted YES in is asked about once this many lease times have passed without a decision. */
export const INQUIRY_AFTER_LEASES = 2;

/** How often a worker looks for rounds to ask about: every lease time (at least 200 ms). */
export function inquiryIntervalMs(leaseMs: number): number {
  return Math.max(200, leaseMs);
}

export type RoundOutcome = 'committed' | 'aborted';

/** A round this worker was asked to prepare and whose decision it has not learnt yet. */
export interface ParticipantRound<T> {
  epoch: number;
  roundId: string;
  /** When the YES vote was given; undefined while preparing. */
  votedAtMs?: number;
  /** The caller's own state of the preparation. */
  preparing: T;
}

export type PrepareAdmission<T> =
  /** Decided already: vote NO with `reason`. */
  | { kind: 'decided'; reason: string }
  /** Being prepared or voted YES in: answer with the same vote. */
  | { kind: 'repeat'; round: ParticipantRound<T> }
  /** New: prepare it, and `begin` it. */
  | { kind: 'new' };

export class Participant<T> {
  private token: number;
  private readonly rounds = new Map<string, ParticipantRound<T>>();
  private readonly decided = new Map<string, RoundOutcome>();

  /** @param tokenFloor the newest leader token issued so far (a restarted worker reads it from Redis) */
  constructor(tokenFloor = 0) {
    this.token = tokenFloor;
  }

  /** The newest leader token seen. */
  get seenToken(): number {
    return this.token;
  }

  /** Refuses a call from a deposed leader (StaleLeaderError); remembers the newest token seen. */
  checkToken(token: number): void {
    if (token < this.token) throw new StaleLeaderError(token, this.token);
    this.token = token;
  }

  /** A PREPARE arrived: checks its token (throws if stale), then says what it is. */
  prepare(request: PrepareRequest): PrepareAdmission<T> {
    this.checkToken(request.leaderToken);
    const outcome = this.decided.get(request.roundId);
    if (outcome) return { kind: 'decided', reason: `round ${request.roundId} of epoch ${request.epoch} was already decided (${outcome})` };
    const round = this.rounds.get(request.roundId);
    return round ? { kind: 'repeat', round } : { kind: 'new' };
  }

  /** A new round (`prepare` said so) is being prepared. */
  begin(request: PrepareRequest, preparing: T): ParticipantRound<T> {
    const round: ParticipantRound<T> = { epoch: request.epoch, roundId: request.roundId, preparing };
    this.rounds.set(request.roundId, round);
    return round;
  }

  /**
   * The round's vote was given. A NO is not kept: a retry of the round may try again. A round
   * decided while it was being prepared is done with.
   */
  voted(round: ParticipantRound<T>, yes: boolean, nowMs: number): void {
    if (!yes || this.decided.has(round.roundId)) this.forget(round);
    else round.votedAtMs = nowMs;
  }

  /** Preparing the round failed without a vote: a retry may try again. */
  failed(round: ParticipantRound<T>): void {
    this.forget(round);
  }

  /** The round's decision is known (told, or asked for): the round is over. */
  learned(roundId: string, outcome: RoundOutcome): void {
    this.rounds.delete(roundId);
    this.decided.set(roundId, outcome);
    if (this.decided.size > DECIDED_KEPT) this.decided.delete(this.decided.keys().next().value!);
  }

  /** Rounds voted YES in and undecided, oldest first. */
  undecided(): ParticipantRound<T>[] {
    return [...this.rounds.values()].filter((r) => r.votedAtMs !== undefined);
  }

  /** The undecided rounds to ask about now: voted YES in INQUIRY_AFTER_LEASES lease times ago or more. */
  due(nowMs: number, leaseMs: number): ParticipantRound<T>[] {
    const askBefore = nowMs - INQUIRY_AFTER_LEASES * leaseMs;
    return this.undecided().filter((r) => r.votedAtMs! <= askBefore);
  }

  private forget(round: ParticipantRound<T>): void {
    if (this.rounds.get(round.roundId) === round) this.rounds.delete(round.roundId);
  }
}

/** One queue's outcome of a PREPARE: its part of the checkpoint, or why it could not take part. */
export type QueueOutcome = { vhost: string; queue: string; part: QueueCheckpoint } | { vhost: string; queue: string; failure: string };

/**
 * A worker votes per queue (G8): the parts it could prepare go into its partition and its YES
 * vote, the others are listed as failed with their reasons. With no part at all the vote is NO.
 */
export function splitOutcomes(outcomes: readonly QueueOutcome[]): { parts: QueueCheckpoint[]; failed: QueueFailure[] } {
  const parts: QueueCheckpoint[] = [];
  const failed: QueueFailure[] = [];
  for (const o of outcomes) {
    if ('part' in o) parts.push(o.part);
    else failed.push({ vhost: o.vhost, queue: o.queue, reason: o.failure });
  }
  return { parts, failed };
}

/** The reason of a NO vote in which every queue failed. */
export function failedReason(workerId: string, failed: readonly QueueFailure[]): string {
  const shown = failed.slice(0, 3).map((f) => `${f.vhost}/${f.queue}: ${f.reason}`);
  const more = failed.length > 3 ? ` (and ${failed.length - 3} more queue(s))` : '';
  return `worker ${workerId}: ${shown.join('; ')}${more}`;
}

/**
 * The queues whose cut a decision lets this worker adopt as their base, by queueKey. A COMMIT
 * with an empty `counted` (an older leader) takes every queue of the vote: undefined. ABORT: none.
 * A queue of the vote not listed is outside the checkpoint's cut: its capture keeps its previous
 * base (as on ABORT), or its next part would build on a cut no manifest holds.
 */
export function countedOf(request: Pick<DecideRequest, 'decision' | 'counted'>): Set<string> | undefined {
  if (request.decision !== Decision.DECISION_COMMIT) return new Set();
  if (request.counted.length === 0) return undefined;
  return new Set(request.counted.map((q) => queueKey(q.vhost, q.queue)));
}
