/**
 * The invariants, checked in the very step that could break them (every decision-log write,
 * DECIDE a leader sends, manifest write, vote, decision a worker applies and base it adopts is
 * reported here as it happens), plus convergence, checked after every step of the calm phase:
 *
 * - single-outcome: no round is decided both ways. The decisions are the decision-log history
 *   (Redis losses included), every DECIDE a leader or recovery sends, and the manifests that
 *   became visible; a worker applying COMMIT counts too. A worker that asked and was answered
 *   ABORT only forgets the round (keeps its older base), so that is no decision: the round may
 *   still become visible (after a Redis loss). What a worker must never do, adopt a base that is
 *   not visible, is visible-base.
 * - complete-manifest (G1, I1, G8): a visible manifest covers every protected queue at most once,
 *   each entry inside its cut exactly as its owner voted YES in that round, and is never replaced
 *   by another round's; a queue is left out only when the parent checkpoint does not hold it.
 * - outside-cut (G8): an entry outside the cut is its queue's last good cut: the parent's entry,
 *   unchanged, whose cut is the cut of checkpoint `since_epoch`, where the queue was inside; its
 *   `since_ms` is kept from the parent's mark. (Its data is then checked like any entry, as of
 *   that checkpoint's fence: exact-prefix.)
 * - exact-prefix (G2, G3, G4): each queue's checkpoint data, read back through the manifest chain
 *   and the stored segments, is exactly the journal's data records before that round's fence:
 *   none missing, none twice, in order; and cuts never move backwards from one epoch to the next.
 * - visible-base: a worker adopts epoch E as a queue's base only while E's manifest (of that
 *   round) is visible.
 * - counted-base (G8): a worker adopts a decided round's cut as a queue's base only if that
 *   round's manifest took the queue's entry from this worker's vote (inside the cut); a leader
 *   never sends a worker ABORT for a committed round that counted one of its queues.
 * - fenced-writes (I2): a decision lands only from the current lease holder, that is the very
 *   acquisition of the lease that holds it now (not just the same token number); a manifest lands
 *   only for a round whose COMMIT a lease holder recorded before it.
 * - retained-verifies (retention and GC): after every deletion from the store (a manifest, a
 *   segment, a staged partition), every checkpoint still visible reads back whole, through its
 *   chain and segments, exactly as exact-prefix requires.
 * - convergence: once faults stop, the world settles within the calm phase: no epoch in the
 *   decision log stays `started`, every committed one becomes visible, every worker is up and
 *   serving, and every worker that voted YES in a round learns its decision. (With the old
 *   in-doubt behaviour, KnownGaps, a round may stay `started` while its leader keeps leading.)
 */
import { orderSegments } from '../../services/core/format/segment-reader.js';
import type { Outcome } from '../../services/coordinator/checkpoint-round.js';
import type { CheckpointManifest, QueueCheckpoint } from '../../services/gen/tidemark/v1/store.js';
import type { PrepareReply } from '../../services/gen/tidemark/v1/worker.js';
import type { Broker, SimQueue } from './broker.js';
import type { LeaseValue, RedisModel, SimDecisionRecord } from './redis.js';
import type { ObjectStoreModel } from './store.js';
import type { WorkerNode } from './worker-node.js';

export type InvariantName =
  | 'single-outcome'
  | 'complete-manifest'
  | 'outside-cut'
  | 'exact-prefix'
  | 'visible-base'
  | 'counted-base'
  | 'fenced-writes'
  | 'retained-verifies'
  | 'convergence';

export class Violation extends Error {
  override name = 'Violation';
  constructor(
    readonly invariant: InvariantName,
    message: string,
  ) {
    super(message);
  }
}

/** What is known of one round's outcome, from every source. */
interface RoundFate {
  /** Decisions: where COMMIT was recorded or sent, and where ABORT was. */
  committed?: string;
  aborted?: string;
  /** Where the round's manifest became visible. */
  visible?: string;
  /** Where a worker asked, was answered ABORT, and forgot the round (not a decision). */
  forgotten?: string;
  /**
   * ABORTs a leader sent to single workers, by worker. A COMMIT's worker none of whose queues were
   * counted (G8) is told ABORT; one whose queues were counted never is.
   */
  abortedFor?: Map<string, string>;
  /** Workers some of whose queues the committed round counted (its commit record, its manifest). */
  counted?: Set<string>;
}

export class Checker {
  /** Every outcome a round was given anywhere, by round id. */
  private readonly fates = new Map<string, RoundFate>();
  /** Rounds whose COMMIT a lease holder recorded (over every life of Redis), with their commit record's queues outside the cut. */
  private readonly committed = new Map<string, Map<string, number>>();
  /** YES votes by round id, then worker. */
  private readonly votes = new Map<string, Map<string, PrepareReply[]>>();

  constructor(
    private readonly queues: SimQueue[],
    private readonly broker: Broker,
    private readonly store: ObjectStoreModel,
    private readonly redis: RedisModel,
    /** The earlier checker: a worker's asked-for ABORT of a round that is or becomes visible is a violation (regressions.ts). */
    private readonly strictForget = false,
  ) {}

  /**
   * A decision-log write landed. Fenced means: written under the very acquisition of the lease
   * that holds it now, not just the same token number (after a Redis loss the same coordinator
   * can win again with the same token).
   */
  decisionWritten(record: SimDecisionRecord, lease: LeaseValue | undefined): void {
    if (!lease || lease.token !== record.leaderToken || lease.acquisition !== record.ghostAcquisition) {
      const now = lease ? `token ${lease.token} (acquisition ${lease.acquisition})` : 'nobody';
      throw new Violation('fenced-writes', `decision ${record.state} of epoch ${record.epoch} (round ${record.roundId}) was written with token ${record.leaderToken} under acquisition ${record.ghostAcquisition} of the lease, while the lease holder is ${now}`);
    }
    if (record.state === 'started') return;
    const where = `decision log (token ${record.leaderToken})`;
    if (record.state === 'committed') {
      this.committed.set(record.roundId, new Map((record.commit?.outside ?? []).map((o) => [o.queue, o.sinceEpoch])));
      // The partitions recorded are those of votes with a queue inside the cut.
      for (const p of record.commit?.partitions ?? []) this.countedWorker(record.roundId, p.workerId);
    }
    this.decided(record.roundId, record.epoch, record.state, where);
  }

  /**
   * A leader sent DECIDE: a decision as binding as a recorded one, delivered or not. An ABORT to
   * one worker is binding for that worker's queues: the round must not have counted any (G8).
   */
  decisionSent(from: string, workerId: string, epoch: number, roundId: string, outcome: Outcome): void {
    const where = `${from} sent DECIDE ${outcome} to ${workerId}`;
    if (outcome === 'committed') return this.decided(roundId, epoch, outcome, where);
    const fate = this.fate(roundId);
    (fate.abortedFor ??= new Map()).set(workerId, fate.abortedFor.get(workerId) ?? where);
    this.checkFate(roundId, epoch, fate);
  }

  private countedWorker(roundId: string, workerId: string): void {
    (this.fate(roundId).counted ??= new Set()).add(workerId);
  }

  voted(workerId: string, roundId: string, reply: PrepareReply): void {
    let byWorker = this.votes.get(roundId);
    if (!byWorker) this.votes.set(roundId, (byWorker = new Map()));
    byWorker.set(workerId, [...(byWorker.get(workerId) ?? []), reply]);
  }

  /**
   * A worker applied an outcome. COMMIT is evidence the round committed. ABORT is a decision only
   * when a leader sent it (counted by decisionSent): a worker that asked and was answered ABORT
   * just forgets the round's fence and keeps its older base, which stays a visible checkpoint, so
   * its next vote lists every segment since then and later checkpoints stay complete, even if
   * this round becomes visible after all. (Adopting a base that is not visible is visible-base.)
   */
  learned(workerId: string, epoch: number, roundId: string, outcome: Outcome, asked: boolean): void {
    const where = `worker ${workerId} ${asked ? 'asked and ' : ''}applied it`;
    if (outcome === 'committed') return this.decided(roundId, epoch, outcome, where);
    if (!asked) return;
    const fate = this.fate(roundId);
    fate.forgotten ??= where;
    this.checkFate(roundId, epoch, fate);
  }

  /**
   * A worker took epoch E as `queue`'s base: from a decision (DECIDE or asking), or from the
   * assignment a (re)starting capture gets, the latest checkpoint's cut.
   */
  baseAdopted(workerId: string, queue: string, epoch: number, roundId: string, how: 'decision' | 'assignment'): void {
    const visible = this.store.manifests.get(epoch);
    if (visible?.roundId !== roundId) {
      throw new Violation('visible-base', `worker ${workerId} took epoch ${epoch} (round ${roundId}) as the base of ${queue}, but ${visible ? `the visible manifest is of round ${visible.roundId}` : 'no manifest of it is visible'}`);
    }
    const entry = visible.queues.find((e) => e.definition?.name === queue);
    if (!entry || entry.outsideCut || (how === 'decision' && entry.workerId !== workerId)) {
      const what = !entry ? 'it leaves the queue out' : entry.outsideCut ? `it carries the queue from checkpoint ${entry.outsideCut.sinceEpoch}, outside its cut` : `it took the queue from worker ${entry.workerId}`;
      throw new Violation('counted-base', `worker ${workerId} took epoch ${epoch} (round ${roundId}) as the base of ${queue} (${how}), but ${what}: its next part would build on a cut no checkpoint holds`);
    }
  }

  manifestWritten(manifest: CheckpointManifest, replaced: CheckpointManifest | undefined, writer: string): void {
    const { epoch, roundId } = manifest;
    if (replaced && replaced.roundId !== roundId) {
      throw new Violation('complete-manifest', `${writer} replaced checkpoint ${epoch} of round ${replaced.roundId} with one of round ${roundId}`);
    }
    if (!this.committed.has(roundId)) {
      throw new Violation('fenced-writes', `${writer} made checkpoint ${epoch} (round ${roundId}) visible, but no lease holder recorded its COMMIT`);
    }
    const fate = this.fate(roundId);
    fate.visible = `manifest written by ${writer}`;
    this.checkFate(roundId, epoch, fate);
    const seen = new Set<string>();
    for (const entry of manifest.queues) {
      const name = entry.definition?.name ?? '';
      if (seen.has(name)) throw new Violation('complete-manifest', `checkpoint ${epoch} lists ${name} twice`);
      seen.add(name);
      if (!entry.outsideCut) this.countedWorker(roundId, entry.workerId);
    }
    this.checkFate(roundId, epoch, fate);
    const parent = manifest.parentEpoch === 0 ? undefined : this.store.manifests.get(manifest.parentEpoch);
    let inside = 0;
    // What the round recorded with its COMMIT: the queues outside its cut, and since when.
    const recorded = this.committed.get(roundId)!;
    for (const q of this.queues) {
      const entry = manifest.queues.find((e) => e.definition?.vhost === q.vhost && e.definition?.name === q.name);
      const before = parent?.queues.find((e) => e.definition?.vhost === q.vhost && e.definition?.name === q.name);
      const since = recorded.get(q.name);
      const shown = !entry ? 0 : entry.outsideCut ? entry.outsideCut.sinceEpoch : undefined;
      if (since !== shown) {
        const what = (e: number | undefined) => (e === undefined ? 'inside its cut' : e === 0 ? 'left out' : `carried from checkpoint ${e}`);
        throw new Violation('complete-manifest', `checkpoint ${epoch} shows ${q.name} ${what(shown)}, but its COMMIT recorded it ${what(since)}`);
      }
      if (!entry) {
        // G8: a queue that could not take part is left out only when no checkpoint holds it yet.
        if (before) throw new Violation('complete-manifest', `checkpoint ${epoch} is visible without queue ${q.name}, which its parent ${manifest.parentEpoch} holds`);
        continue;
      }
      if (entry.outsideCut) {
        const since = this.checkOutside(manifest, q, entry, before);
        this.checkPrefix(since, q, entry);
        continue;
      }
      inside += 1;
      this.checkVoted(manifest, q, entry);
      this.checkPrefix(manifest, q, entry);
    }
    if (inside === 0) throw new Violation('complete-manifest', `checkpoint ${epoch} is visible with no queue inside its cut`);
    if (manifest.queues.some((e) => !this.queues.some((q) => q.vhost === e.definition?.vhost && q.name === e.definition?.name))) {
      throw new Violation('complete-manifest', `checkpoint ${epoch} lists queues that are not protected`);
    }
  }

  /**
   * An entry outside the cut is the queue's last good cut (G8): its parent entry unchanged (marks
   * aside), holding the cut of checkpoint `since_epoch`, where the queue was inside. Returns that
   * checkpoint, whose fence the entry's data is checked against.
   */
  private checkOutside(manifest: CheckpointManifest, q: SimQueue, entry: QueueCheckpoint, before: QueueCheckpoint | undefined): CheckpointManifest {
    const mark = entry.outsideCut!;
    const fail = (what: string): never => {
      throw new Violation('outside-cut', `checkpoint ${manifest.epoch} carries ${q.name} from checkpoint ${mark.sinceEpoch}, but ${what}`);
    };
    if (!before) return fail(`its parent ${manifest.parentEpoch} does not hold the queue`);
    // A consolidated manifest makes the carried entry full (its segments from retention's history
    // floor, base 0): the same cut and counts, which checkPrefix then reads back whole.
    const carried = samePart(before, entry) || (manifest.full && entry.baseEpoch === 0 && sameCut(before, entry));
    if (!carried || before.workerId !== entry.workerId) fail(`the entry (cut ${entry.cutOffset}) is not the parent's (cut ${before.cutOffset})`);
    const since = this.store.manifests.get(mark.sinceEpoch);
    const last = since?.queues.find((e) => e.definition?.vhost === q.vhost && e.definition?.name === q.name);
    if (!since || !last) return fail('that checkpoint is not visible or lacks the queue');
    if (last.outsideCut) fail(`the queue was outside that checkpoint's cut too (since ${last.outsideCut.sinceEpoch})`);
    if (last.cutOffset !== entry.cutOffset || last.messages !== entry.messages || last.startOffset !== entry.startOffset) {
      fail(`its cut ${entry.cutOffset} (${entry.messages} messages) is not that checkpoint's ${last.cutOffset} (${last.messages})`);
    }
    // since_ms is when the queue first could not take part: kept while it stays outside.
    if (before.outsideCut && (before.outsideCut.sinceEpoch !== mark.sinceEpoch || before.outsideCut.sinceMs !== mark.sinceMs)) {
      fail(`its parent marked it outside since checkpoint ${before.outsideCut.sinceEpoch} at ${before.outsideCut.sinceMs}, now ${mark.sinceEpoch} at ${mark.sinceMs}`);
    }
    if (!before.outsideCut && mark.sinceEpoch !== manifest.parentEpoch) fail(`it was inside its parent ${manifest.parentEpoch}'s cut`);
    return since;
  }

  /**
   * Something was deleted from the store (retention and GC): every checkpoint still visible must
   * read back whole and exact.
   */
  deleted(key: string, writer: string): void {
    for (const manifest of [...this.store.manifests.values()].sort((a, b) => a.epoch - b.epoch)) {
      for (const q of this.queues) {
        const entry = manifest.queues.find((e) => e.definition?.vhost === q.vhost && e.definition?.name === q.name);
        if (!entry) continue;
        try {
          // A carried entry (G8) holds the cut of the checkpoint it is carried from, which stays.
          const since = entry.outsideCut ? this.store.manifests.get(entry.outsideCut.sinceEpoch) : manifest;
          if (!since) throw new Violation('retained-verifies', `checkpoint ${manifest.epoch} carries ${q.name} from checkpoint ${entry.outsideCut!.sinceEpoch}, which is gone`);
          this.checkPrefix(since, q, entry);
        } catch (err) {
          if (!(err instanceof Violation)) throw err;
          throw new Violation('retained-verifies', `after ${writer} deleted ${key}: ${err.message}`);
        }
      }
    }
  }

  /**
   * Every entry is the queue's part of a YES vote its owner gave in this very round; in a full
   * (consolidated) manifest, that part made full: the same cut and counts, base 0, and every
   * segment the vote listed.
   */
  private checkVoted(manifest: CheckpointManifest, q: SimQueue, entry: QueueCheckpoint): void {
    const replies = this.votes.get(manifest.roundId)?.get(q.owner) ?? [];
    const match = replies.some((r) => r.queues.some((v) => v.definition?.name === q.name && (samePart(v, entry) || (manifest.full && sameAsFull(v, entry)))));
    if (entry.workerId !== q.owner || !match) {
      throw new Violation('complete-manifest', `checkpoint ${manifest.epoch}'s entry for ${q.name} (worker ${entry.workerId}, cut ${entry.cutOffset}) is not a YES vote of ${q.owner} in round ${manifest.roundId}`);
    }
  }

  /** Reads the queue back (Catalog.segmentsOf + readPrefix) and compares with the journal. */
  private checkPrefix(manifest: CheckpointManifest, q: SimQueue, entry: QueueCheckpoint): void {
    const where = `checkpoint ${manifest.epoch}, queue ${q.name}`;
    const fail = (what: string) => {
      throw new Violation('exact-prefix', `${where}: ${what}`);
    };
    const fence = this.broker.fenceOffset(q.name, manifest.epoch, manifest.roundId);
    if (fence !== entry.cutOffset) fail(`cut ${entry.cutOffset} is not the round's fence (${fence ?? 'not in the journal'})`);
    const segments = [...entry.segments];
    const chain = new Set<number>();
    for (let base = entry.baseEpoch; base !== 0; ) {
      if (chain.has(base)) fail(`manifest chain loops at ${base}`);
      chain.add(base);
      const link = this.store.manifests.get(base)?.queues.find((e) => e.definition?.name === q.name);
      if (!link) return fail(`base checkpoint ${base} is not visible or lacks the queue`);
      segments.push(...link.segments);
      base = link.baseEpoch;
    }
    const got: number[] = [];
    let next = entry.startOffset;
    for (const ref of orderSegments(segments)) {
      if (next >= entry.cutOffset) break;
      if (ref.lastOffset < next) continue;
      if (ref.firstOffset > next) fail(`gap: offsets ${next}..${ref.firstOffset - 1} are in no segment`);
      const segment = this.store.segments.get(ref.key);
      if (!segment) return fail(`segment ${ref.key} is listed but not in the store`);
      for (const record of segment.entries) {
        if (record.offset < next) continue;
        if (record.offset >= entry.cutOffset) break;
        next = record.offset + 1;
        if (record.kind === 'data') got.push(record.id);
      }
    }
    if (next < entry.cutOffset) fail(`data ends at offset ${next}, before the cut ${entry.cutOffset}`);
    const want: number[] = [];
    for (const record of this.broker.journals.get(q.name)!.slice(entry.startOffset, entry.cutOffset)) if (record.kind === 'data') want.push(record.id);
    if (got.length !== want.length || got.some((id, i) => id !== want[i])) fail(`restores messages [${got.join(',')}] but the journal holds [${want.join(',')}] before the fence`);
    if (entry.messages !== want.length) fail(`counts ${entry.messages} messages, the prefix holds ${want.length}`);
    // Cuts inside the cut of their checkpoints never run backwards; a carried entry (G8) holds an
    // older cut by design, and says so.
    if (entry.outsideCut) return;
    for (const other of this.store.manifests.values()) {
      const theirs = other.queues.find((e) => e.definition?.name === q.name);
      const cut = theirs?.outsideCut ? undefined : theirs?.cutOffset;
      if (cut === undefined || other.epoch === manifest.epoch) continue;
      if ((other.epoch < manifest.epoch && cut > entry.cutOffset) || (other.epoch > manifest.epoch && cut < entry.cutOffset)) {
        fail(`cut ${entry.cutOffset} and checkpoint ${other.epoch}'s cut ${cut} run backwards`);
      }
    }
  }

  private fate(roundId: string): RoundFate {
    let fate = this.fates.get(roundId);
    if (!fate) this.fates.set(roundId, (fate = {}));
    return fate;
  }

  /** One outcome per round: no round is decided or seen both ways. */
  private decided(roundId: string, epoch: number, outcome: Outcome, where: string): void {
    const fate = this.fate(roundId);
    if (outcome === 'committed') fate.committed ??= where;
    else fate.aborted ??= where;
    this.checkFate(roundId, epoch, fate);
  }

  private checkFate(roundId: string, epoch: number, fate: RoundFate): void {
    const committed = fate.visible ?? fate.committed;
    if (committed && fate.aborted) {
      throw new Violation('single-outcome', `round ${roundId} of epoch ${epoch} is committed (${committed}) and aborted (${fate.aborted})`);
    }
    // A round that committed nothing of a worker's vote tells it ABORT (G8); one that did, never.
    for (const [workerId, where] of fate.abortedFor ?? []) {
      if (committed && fate.counted?.has(workerId)) {
        throw new Violation('single-outcome', `round ${roundId} of epoch ${epoch} is committed (${committed}) counting queues of ${workerId}, and aborted for it (${where})`);
      }
      // With no COMMIT known at all, an ABORT is the round's decision, as before G8.
      if (!committed) fate.aborted ??= where;
    }
    // The earlier checker (regressions.ts): a forgotten round must never become visible.
    if (this.strictForget && fate.visible && fate.forgotten) {
      throw new Violation('single-outcome', `round ${roundId} of epoch ${epoch} is visible (${fate.visible}) and forgotten (${fate.forgotten})`);
    }
  }

  /**
   * Undefined once the world has settled; otherwise what is still unsettled. `startedMayStay`:
   * a round left `started` by a leader that keeps leading may stay so (the old in-doubt
   * behaviour, KnownGaps.inDoubtWaitsForLeaderChange).
   */
  unsettled(workers: Iterable<WorkerNode>, startedMayStay: boolean): string | undefined {
    for (const record of this.redis.decisions.values()) {
      if (record.state === 'started' && !startedMayStay) return `epoch ${record.epoch} is still undecided`;
      if (record.state !== 'committed') continue;
      if (this.store.manifests.get(record.epoch)?.roundId !== record.roundId) return `epoch ${record.epoch} is committed but its manifest is not visible`;
    }
    for (const worker of workers) {
      if (!worker.up || !worker.serving) return `worker ${worker.id} is down`;
      for (const [roundId, epoch] of worker.undecided()) {
        const record = this.redis.decisions.get(epoch);
        if (record?.state !== 'started' || this.store.manifests.has(epoch) || !startedMayStay) {
          return `worker ${worker.id} voted YES in epoch ${epoch} (round ${roundId}) and has not learned its decision (${record?.state ?? 'no record'}, manifest ${this.store.manifests.has(epoch) ? 'visible' : 'missing'})`;
        }
      }
    }
    return undefined;
  }
}

/** `full` is `vote` consolidated: same cut, start and count, base 0, every voted segment kept. */
function sameAsFull(vote: QueueCheckpoint, full: QueueCheckpoint): boolean {
  const keys = new Set(full.segments.map((s) => s.key));
  return (
    full.baseEpoch === 0 &&
    vote.cutOffset === full.cutOffset &&
    vote.startOffset === full.startOffset &&
    vote.messages === full.messages &&
    vote.segments.every((s) => keys.has(s.key))
  );
}

function sameCut(a: QueueCheckpoint, b: QueueCheckpoint): boolean {
  return a.cutOffset === b.cutOffset && a.startOffset === b.startOffset && a.messages === b.messages;
}

function samePart(a: QueueCheckpoint, b: QueueCheckpoint): boolean {
  return (
    a.cutOffset === b.cutOffset &&
    a.startOffset === b.startOffset &&
    a.baseEpoch === b.baseEpoch &&
    a.messages === b.messages &&
    a.segments.length === b.segments.length &&
    a.segments.every((s, i) => s.key === b.segments[i].key)
  );
}
