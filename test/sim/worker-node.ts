/**
 * A simulated worker process: the I/O of services/worker/worker.ts over simulated time, network,
 * Redis and store. Everything it decides is shipped code: as a participant the REAL `Participant`
 * (services/worker/participant.ts), for each queue the REAL JournalCursor and CaptureLedger
 * (through capture-model.ts), and for a missed decision the REAL `answerInquiry`, each driven as
 * worker.ts drives it: the token floor and stale leaders, idempotent PREPARE, decided rounds (DECIDED_KEPT),
 * and which rounds to ask about when. Around it:
 * - a restarted worker first reads the token counter in Redis as its floor, and refuses calls
 *   (UNAVAILABLE) until then;
 * - PREPARE: waits for this round's fence in each queue, flushes until the fence is durable,
 *   stages its partition manifest, votes YES with the cuts (or NO with a reason). A repeat of a
 *   round being prepared or voted YES in gets the same reply (it is not staged twice);
 * - DECIDE: COMMIT moves each capture's base to the round's cut, ABORT forgets the fence;
 * - every `inquiryIntervalMs`, the rounds `Participant.due` names are asked about: the
 *   decision-log record (HGET), the manifest, and the newest visible epoch only when the record
 *   says committed and there is no manifest. The REAL `answerInquiry`
 *   (services/worker/decision-inquiry.ts) answers: COMMIT, ABORT (forget the round) or wait;
 * - restarted, it resumes every queue from the latest visible checkpoint's cut (the assignment a
 *   leader would send it).
 * All of this is volatile: a crash loses it.
 */
import { Decision, Vote, type DecideRequest, type PrepareReply, type PrepareRequest, type QueueFailure } from '../../services/gen/tidemark/v1/worker.js';
import type { QueueCheckpoint, SegmentRef } from '../../services/gen/tidemark/v1/store.js';
import { partitionKey } from '../../services/core/store/keys.js';
import type { Outcome } from '../../services/coordinator/checkpoint-round.js';
import { baseOf } from '../../services/coordinator/assignment.js';
import { answerInquiry, countedFor } from '../../services/worker/decision-inquiry.js';
import { countedOf, failedReason, inquiryIntervalMs, Participant, type ParticipantRound, type PrepareAdmission, type QueueOutcome, splitOutcomes } from '../../services/worker/participant.js';
import { queueKey, splitQueueKey } from '../../services/core/format/queue-key.js';
import { errorMessage } from '../../services/core/errors.js';
import type { SimQueue } from './broker.js';
import type { Task } from './scheduler.js';
import { CaptureModel, type CaptureStart } from './capture-model.js';
import type { Node, World } from './world.js';

export type Result<T> = { ok: true; value: T } | { ok: false; error: string };
export type Respond<T> = (result: Result<T>) => void;

/** The gRPC statuses a caller retries (isRetryableGrpcError): UNAVAILABLE and DEADLINE_EXCEEDED. */
export function isRetryable(error: string): boolean {
  return error === 'deadline exceeded' || error.startsWith('unavailable');
}

/** What the worker keeps with a round while preparing it (the real one keeps the promise of its vote). */
interface Preparing {
  request: PrepareRequest;
  /** Queues that cannot take part, by name, and why (G8): the vote lists them as failed. */
  failed: Map<string, string>;
  /** The vote, once given; every repeat of the PREPARE gets it. */
  reply: PrepareReply | undefined;
  responders: Respond<PrepareReply>[];
  staging: boolean;
  deadline: Task | undefined;
}

type PreparedRound = ParticipantRound<Preparing>;

export class WorkerNode implements Node {
  incarnation = 0;
  up = true;
  /** Serving gRPC: false from a restart until the token floor is read. */
  serving = true;
  /** Worker.participant: rounds, decided rounds and the newest token seen. */
  private participant = new Participant<Preparing>();
  readonly captures = new Map<string, CaptureModel>();
  /** Preparations still running (a round decided meanwhile keeps preparing, as in the real worker). */
  private readonly preparing = new Set<PreparedRound>();
  private inquiring = false;

  constructor(
    readonly id: string,
    private readonly world: World,
    private readonly owned: SimQueue[],
  ) {}

  /** Rounds this life voted YES in and has not learned the decision of: [roundId, epoch]. */
  *undecided(): Iterable<[string, number]> {
    for (const round of this.participant.undecided()) yield [round.roundId, round.epoch];
  }

  /** The newest leader token seen. */
  get seenToken(): number {
    return this.participant.seenToken;
  }

  start(): void {
    for (const q of this.owned) this.install(q, { startOffset: 0, resumeOffset: 0, baseEpoch: 0, baseMessages: 0 });
    this.startTimers();
  }

  crash(): void {
    this.up = false;
    this.serving = false;
    this.participant = new Participant();
    this.captures.clear();
    this.preparing.clear();
    this.inquiring = false;
  }

  /** Comes back with nothing; reads the current token and the latest checkpoint, then captures. */
  restart(): void {
    this.incarnation += 1;
    this.up = true;
    this.startTimers();
    this.resume();
  }

  private resume(): void {
    const { net, redis, options } = this.world;
    // Worker.create: the token floor first; the server is started only then.
    net.read(this, 'read token floor', options.faults.redisError, () => redis.leaderTokenCounter, (token) => {
      if (!token.ok) return net.timer(this, 100, `${this.id} resume retry`, () => this.resume());
      this.participant = new Participant(token.value);
      this.serving = true;
      this.resumeCaptures();
    });
  }

  /** What the leader's assignment gives a worker: each queue from the latest visible cut. */
  private resumeCaptures(): void {
    const { net, store, options } = this.world;
    net.read(this, 'read latest manifest', options.faults.storeError, () => store.latest(), (latest) => {
      if (!latest.ok) return net.timer(this, 100, `${this.id} resume retry`, () => this.resumeCaptures());
      const manifest = latest.value;
      for (const q of this.owned) {
        const entry = manifest?.queues.find((e) => e.definition?.vhost === q.vhost && e.definition?.name === q.name);
        // assignment.ts baseOf: a queue carried forward (G8) resumes from the checkpoint whose cut
        // its entry still holds, whose fence is at that offset.
        const base = entry && manifest ? baseOf(entry, manifest.epoch) : 0;
        this.install(
          q,
          entry && manifest
            ? { startOffset: entry.startOffset, resumeOffset: entry.cutOffset, baseEpoch: base, baseMessages: entry.messages }
            : { startOffset: 0, resumeOffset: 0, baseEpoch: 0, baseMessages: 0 },
        );
        if (entry && manifest) this.world.checker.baseAdopted(this.id, q.name, base, store.manifests.get(base)?.roundId ?? '', 'assignment');
      }
    });
  }

  private install(q: SimQueue, start: CaptureStart): void {
    this.captures.set(q.name, new CaptureModel(q, this.world.definitions.get(q.name)!, start, `${this.id}.${this.incarnation}`));
  }

  private startTimers(): void {
    const { net, random, options } = this.world;
    // Once faults stop and nothing is left to read, flush or prepare, ticks slow down: they
    // would do nothing, and every tick is a step of the schedule.
    const tick = () => {
      this.tick();
      net.timer(this, this.world.calm && this.idle() ? 400 : random.int(60, 200), `${this.id} tick`, tick);
    };
    net.timer(this, random.int(1, 100), `${this.id} tick`, tick);
    const every = inquiryIntervalMs(options.leaseMs);
    const inquire = () => {
      this.inquire();
      net.timer(this, every, `${this.id} inquiry tick`, inquire);
    };
    net.timer(this, every, `${this.id} inquiry tick`, inquire);
  }

  private idle(): boolean {
    if (this.preparing.size > 0) return false;
    for (const c of this.captures.values()) {
      if (c.flushing || c.ledger.durableOffset < this.world.broker.journals.get(c.queue.name)!.length) return false;
    }
    return true;
  }

  /** Deliveries from the journals and the flush timer (QueueCapture.tick). */
  private tick(): void {
    const { broker, random } = this.world;
    for (const capture of this.captures.values()) {
      capture.read(broker.journals.get(capture.queue.name)!, random.int(0, 8));
      if (random.chance(0.3)) this.flush(capture);
    }
    for (const p of [...this.preparing]) this.advance(p);
  }

  private flush(capture: CaptureModel, done?: (ok: boolean) => void): void {
    const segment = capture.pendingSegment();
    if (!segment || capture.flushing) return;
    capture.flushing = true;
    const { net, store, options } = this.world;
    // A queue in an outage (FaultRates.queueOutage) cannot write its segments.
    const out = (this.world.outages.get(capture.queue.name) ?? 0) > this.world.scheduler.now;
    net.call(this, `put segment ${capture.queue.name} ${segment.firstOffset}-${segment.lastOffset}`, out ? 1 : options.faults.storeError, 0, () => {
      const journal = this.world.broker.journals.get(capture.queue.name)!;
      store.segments.set(segment.key, {
        queue: capture.queue.name,
        firstOffset: segment.firstOffset,
        lastOffset: segment.lastOffset,
        entries: journal.slice(segment.firstOffset, segment.lastOffset + 1),
        writtenAtMs: this.world.scheduler.now,
      });
    }, (result) => {
      capture.flushing = false;
      if (result.ok) capture.flushed(segment as SegmentRef);
      done?.(result.ok);
      for (const p of [...this.preparing]) this.advance(p);
    });
  }

  /** Participant.checkToken: a deposed leader's call fails (StaleLeaderError). */
  private stale(token: number): string | undefined {
    try {
      this.participant.checkToken(token);
      return undefined;
    } catch (err) {
      return errorMessage(err);
    }
  }

  /** Worker.prepare. */
  onPrepare(request: PrepareRequest, deadlineAt: number, respond: Respond<PrepareReply>): void {
    if (!this.serving) return respond({ ok: false, error: 'unavailable: not serving yet' });
    let admitted: PrepareAdmission<Preparing>;
    try {
      admitted = this.participant.prepare(request);
    } catch (err) {
      return respond({ ok: false, error: errorMessage(err) });
    }
    if (admitted.kind === 'decided') return respond({ ok: true, value: this.no(admitted.reason) });
    // The same round asked again gets the same answer (and is not staged twice).
    if (admitted.kind === 'repeat') {
      const earlier = admitted.round.preparing;
      if (earlier.reply) return respond({ ok: true, value: earlier.reply });
      earlier.responders.push(respond);
      return;
    }
    const round = this.participant.begin(request, { request, failed: new Map(), reply: undefined, responders: [respond], staging: false, deadline: undefined });
    for (const q of request.queues) if (!this.captures.has(q.queue)) round.preparing.failed.set(q.queue, `worker ${this.id} does not capture it`);
    this.preparing.add(round);
    round.preparing.deadline = this.world.net.timer(this, deadlineAt - this.world.scheduler.now, `${this.id} prepare ${request.epoch} deadline`, () => {
      // The gRPC deadline aborts the wait for the fence and the flushes, not the staging write:
      // the queues not ready fail, and the others are staged and voted (Worker.prepareRound).
      this.advance(round, `prepare of epoch ${request.epoch} ran out of time`);
    });
    this.advance(round);
  }

  /**
   * One look at a running PREPARE, queue by queue (G8): fence read? durable? A queue whose capture
   * failed, or whose flush failed, cannot take part; once every queue is ready or failed, the
   * ready ones are staged and voted YES with the failed ones listed (NO if none is ready).
   * `outOfTime`: the deadline passed, so every queue not ready fails with that reason.
   */
  private advance(round: PreparedRound, outOfTime?: string): void {
    if (round.preparing.staging || !this.preparing.has(round)) return;
    const { epoch, roundId } = round;
    const { failed } = round.preparing;
    const outcomes: QueueOutcome[] = [];
    let ready = true;
    for (const ref of round.preparing.request.queues) {
      const gone = failed.get(ref.queue);
      if (gone !== undefined) {
        outcomes.push({ vhost: ref.vhost, queue: ref.queue, failure: gone });
        continue;
      }
      const capture = this.captures.get(ref.queue)!;
      if (capture.failure) {
        failed.set(ref.queue, capture.failure);
        outcomes.push({ vhost: ref.vhost, queue: ref.queue, failure: capture.failure });
        continue;
      }
      const fence = capture.fence(epoch, roundId);
      const durable = fence && (this.world.options.variant === 'vote-before-durable' || capture.ledger.durableThrough(fence));
      if (!fence || !durable) {
        if (outOfTime) {
          failed.set(ref.queue, outOfTime);
          outcomes.push({ vhost: ref.vhost, queue: ref.queue, failure: outOfTime });
          continue;
        }
        ready = false;
        // A failed flush the PREPARE itself asked for fails the queue (QueueCapture.prepare rethrows it).
        if (fence) {
          this.flush(capture, (ok) => {
            if (ok || failed.has(ref.queue)) return;
            failed.set(ref.queue, `segment write of ${ref.queue} failed`);
            this.advance(round);
          });
        }
        continue;
      }
      outcomes.push({ vhost: ref.vhost, queue: ref.queue, part: capture.part(fence, this.id) });
    }
    if (!ready) return;
    const { parts, failed: failures } = splitOutcomes(outcomes);
    if (parts.length === 0) return this.answer(round, this.no(failedReason(this.id, failures), failures));
    this.stage(round, parts, failures);
  }

  private stage(round: PreparedRound, queues: QueueCheckpoint[], failed: QueueFailure[]): void {
    round.preparing.staging = true;
    const { epoch, roundId } = round;
    const { net, store, options } = this.world;
    const key = partitionKey(epoch, this.id);
    const sha256 = store.nextSha();
    net.call(this, `stage ${key}`, options.faults.storeError, 0, () => {
      store.partitions.set(key, { sha256, epoch, workerId: this.id, leaderToken: round.preparing.request.leaderToken, roundId, queues, writtenAtMs: this.world.scheduler.now });
    }, (result) => {
      if (!result.ok) return this.answer(round, this.no(`worker ${this.id} cannot stage its partition manifest: ${result.error}`));
      const reply: PrepareReply = { vote: Vote.VOTE_YES, reason: '', workerId: this.id, queues, partitionKey: key, partitionSha256: sha256, failed };
      this.world.checker.voted(this.id, roundId, reply);
      this.answer(round, reply);
    });
  }

  private answer(round: PreparedRound, reply: PrepareReply): void {
    if (!this.preparing.delete(round)) return;
    if (round.preparing.deadline) round.preparing.deadline.cancelled = true;
    round.preparing.reply = reply;
    this.participant.voted(round, reply.vote === Vote.VOTE_YES, this.world.scheduler.now);
    this.world.scheduler.log(`${this.id} votes ${reply.vote === Vote.VOTE_YES ? 'YES' : `NO (${reply.reason})`} in ${round.epoch}`);
    for (const respond of round.preparing.responders) respond({ ok: true, value: reply });
  }

  private no(reason: string, failed: QueueFailure[] = []): PrepareReply {
    return { vote: Vote.VOTE_NO, reason, workerId: this.id, queues: [], partitionKey: '', partitionSha256: '', failed };
  }

  /** Worker.decide. */
  onDecide(request: DecideRequest, respond: Respond<void>): void {
    if (!this.serving) return respond({ ok: false, error: 'unavailable: not serving yet' });
    const stale = this.stale(request.leaderToken);
    if (stale) return respond({ ok: false, error: stale });
    const outcome: Outcome = request.decision === Decision.DECISION_COMMIT ? 'committed' : 'aborted';
    this.apply(request.epoch, request.roundId, outcome, 'DECIDE', countedOf(request));
    respond({ ok: true, value: undefined });
  }

  /**
   * Worker.apply: COMMIT makes the round's cut the base of each queue it counted (undefined: all);
   * every other queue forgets the round's fence, as on ABORT. The broken variant
   * `adopt-uncounted-base` adopts it for every queue.
   */
  private apply(epoch: number, roundId: string, outcome: Outcome, how: string, counted?: Set<string>): void {
    this.world.scheduler.log(`${this.id} applies ${outcome} of ${epoch} (${how})${counted ? ` counting ${[...counted].map((id) => splitQueueKey(id).queue).join(',') || 'nothing'}` : ''}`);
    this.world.checker.learned(this.id, epoch, roundId, outcome, how !== 'DECIDE');
    const everything = this.world.options.variant === 'adopt-uncounted-base';
    for (const capture of this.captures.values()) {
      const takes = outcome === 'committed' && (everything || counted === undefined || counted.has(queueKey(capture.queue.vhost, capture.queue.name)));
      if (!takes) capture.abort(epoch, roundId);
      else if (capture.commit(epoch, roundId)) this.world.checker.baseAdopted(this.id, capture.queue.name, epoch, roundId, 'decision');
    }
    this.participant.learned(roundId, outcome);
  }

  /**
   * Worker.inquire: each round `Participant.due` names, one after the other; a failed read ends
   * the pass (the next one tries again).
   */
  private inquire(): void {
    if (this.inquiring) return;
    const { net, redis, store, options, scheduler } = this.world;
    // The broken variant asks at once (as if the lease time were 0), so it meets COMMIT records
    // whose manifest is still being written.
    const due = this.participant.due(scheduler.now, options.variant === 'adopt-base-on-commit-record' ? 0 : options.leaseMs);
    if (due.length === 0) return;
    this.inquiring = true;
    const stop = () => {
      this.inquiring = false;
    };
    const next = (i: number): void => {
      if (i === due.length) return stop();
      const { epoch, roundId } = due[i];
      net.read(this, `ask decision ${epoch}`, options.faults.redisError, () => redis.decisions.get(epoch), (record) => {
        if (!record.ok) return stop();
        net.read(this, `ask manifest ${epoch}`, options.faults.storeError, () => store.manifests.get(epoch), (read) => {
          if (!read.ok) return stop();
          const manifest = { ok: true as const, value: read.value?.roundId };
          const answer = (newestVisible: number | undefined) => {
            this.world.stats.askedDecisions += 1;
            const rec = record.value;
            const facts = { record: rec && { state: rec.state, roundId: rec.roundId }, manifestRoundId: manifest.value, newestVisible };
            const answer = answerInquiry({ epoch, roundId }, facts);
            // Worker.inquire: the manifest says which of our queues it took from our vote.
            if (answer !== 'wait') this.apply(epoch, roundId, answer === 'commit' ? 'committed' : 'aborted', `asked: ${JSON.stringify(facts)}`, read.value && countedFor(read.value, this.id));
            else if (options.variant === 'adopt-base-on-commit-record' && rec?.state === 'committed' && rec.roundId === roundId) {
              this.apply(epoch, roundId, 'committed', 'asked, broken: no manifest');
            }
            next(i + 1);
          };
          if (record.value?.state !== 'committed' || manifest.value !== undefined) return answer(undefined);
          net.read(this, `ask newest checkpoint`, options.faults.storeError, () => store.latest()?.epoch ?? 0, (newest) => {
            if (!newest.ok) return stop();
            answer(newest.value);
          });
        });
      });
    };
    next(0);
  }
}
