import { describe, expect, it } from 'vitest';
import {
  assembleManifest,
  CheckpointRound,
  type PriorEntry,
  type RoundEffect,
  type RoundEvent,
  type RoundParticipant,
  type RoundPlan,
  type RoundQueue,
} from '../../services/coordinator/checkpoint-round.js';
import { queueKey } from '../../services/core/format/queue-key.js';
import type { CheckpointManifest, ExchangeDefinition, QueueCheckpoint, QueueDefinition } from '../../services/gen/tidemark/v1/store.js';
import { PrepareReply, Vote } from '../../services/gen/tidemark/v1/worker.js';

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/** The coordinator's discovered definition: the authority the manifest must carry. */
function plannedDef(vhost: string, name: string): QueueDefinition {
  return {
    vhost,
    name,
    type: 'quorum',
    durable: true,
    autoDelete: false,
    arguments: { entries: [{ key: 'x-queue-type', value: { kind: { $case: 'stringValue', value: 'quorum' } } }] },
    bindings: [{ source: 'orders', routingKey: `${name}.#`, arguments: undefined }],
  };
}

/** What a worker might report: same identity, a different (stale) shape. */
function workerDef(vhost: string, name: string): QueueDefinition {
  return { vhost, name, type: 'classic', durable: false, autoDelete: true, arguments: undefined, bindings: [] };
}

const EXCHANGES: ExchangeDefinition[] = [
  { vhost: '/', name: 'orders', type: 'topic', durable: true, autoDelete: false, internal: false, arguments: undefined },
];

interface QueueSpec {
  vhost: string;
  name: string;
}

interface PlanOptions {
  epoch?: number;
  parentEpoch?: number;
  visible?: number[];
  /** workerId → queues it is asked for. */
  assignment?: Record<string, QueueSpec[]>;
  /** Queues the round must cover; defaults to every assigned queue. */
  queues?: QueueSpec[];
  /** All-or-nothing (TIDEMARK_STRICT_ROUNDS); these fixtures default to it, the G8 tests turn it off. */
  strict?: boolean;
  /** The parent checkpoint's entries, by queue id (the round plan's prior). */
  prior?: Map<string, PriorEntry>;
}

const DEFAULT_ASSIGNMENT: Record<string, QueueSpec[]> = {
  'worker-b': [
    { vhost: '/', name: 'zeta' },
    { vhost: 'prod', name: 'billing' },
  ],
  'worker-a': [
    { vhost: '/', name: 'alpha' },
    { vhost: '/', name: 'mid.dle' },
  ],
};

function makePlan(options: PlanOptions = {}): RoundPlan {
  const assignment = options.assignment ?? DEFAULT_ASSIGNMENT;
  const participants: RoundParticipant[] = Object.entries(assignment).map(([workerId, qs]) => ({
    workerId,
    queues: qs.map((q) => ({ vhost: q.vhost, queue: q.name, census: undefined })),
  }));
  const all = options.queues ?? Object.values(assignment).flat();
  const queues = new Map<string, RoundQueue>(
    all.map((q) => [queueKey(q.vhost, q.name), { definition: plannedDef(q.vhost, q.name), journal: `tidemark.journal.${q.name}` }]),
  );
  const visible = new Set(options.visible ?? [3, 5]);
  return {
    epoch: options.epoch ?? 9,
    roundId: 'round-9',
    leaderToken: 42,
    coordinatorId: 'coord-1',
    startedAtMs: 1_000,
    vhosts: [...new Set(all.map((q) => q.vhost))].sort(),
    fenceExchange: 'tidemark.fence',
    participants,
    queues,
    exchanges: EXCHANGES,
    parentEpoch: options.parentEpoch ?? 5,
    isVisible: (e) => visible.has(e),
    strict: options.strict ?? true,
    ...(options.prior ? { prior: options.prior } : {}),
  };
}

interface EntryOptions {
  cut?: number;
  start?: number;
  messages?: number;
  bodyBytes?: number;
  base?: number;
}

function entry(q: QueueSpec, o: EntryOptions = {}): QueueCheckpoint {
  const cut = o.cut ?? 100;
  return {
    definition: workerDef(q.vhost, q.name),
    journal: 'whatever-the-worker-says',
    startOffset: o.start ?? 0,
    cutOffset: cut,
    messages: o.messages ?? 10,
    bodyBytes: o.bodyBytes ?? 1_000,
    segments: [
      {
        key: `segments/${encodeURIComponent(q.vhost)}/${q.name}/0-${cut}.seg`,
        firstOffset: 0,
        lastOffset: cut,
        records: cut + 1,
        messages: o.messages ?? 10,
        storedBytes: 500,
        bodyBytes: o.bodyBytes ?? 1_000,
        sha256: 'ab'.repeat(32),
        codec: 'gzip',
      },
    ],
    baseEpoch: o.base ?? 0,
    workerId: 'reported-by-worker',
    incomplete: [],
    headOffset: 0, headMessages: 0, possiblyAcked: 0, headBasis: '', predating: 0, outsideCut: undefined, historyOffset: 0, historyMessages: 0, headKnown: false,
  };
}

function yes(workerId: string, queues: QueueCheckpoint[]): PrepareReply {
  // fromPartial: fields added to the reply later keep their defaults.
  const reply = PrepareReply.fromPartial({ vote: Vote.VOTE_YES, workerId, partitionKey: `staging/${workerId}.partition` });
  reply.queues = queues;
  return reply;
}

function no(workerId: string, reason: string): PrepareReply {
  return PrepareReply.fromPartial({ vote: Vote.VOTE_NO, reason, workerId });
}

/** A YES from `workerId` covering exactly the queues it was asked for in `plan`. */
function fullYes(plan: RoundPlan, workerId: string, perQueue: (q: QueueSpec) => EntryOptions = () => ({})): PrepareReply {
  const p = plan.participants.find((x) => x.workerId === workerId)!;
  return yes(
    workerId,
    p.queues.map((q) => entry({ vhost: q.vhost, name: q.queue }, perQueue({ vhost: q.vhost, name: q.queue }))),
  );
}

function vote(workerId: string, reply: PrepareReply): RoundEvent {
  return { type: 'vote', workerId, reply };
}

/** Drives a round, recording every effect alongside the event that produced it. */
class Driver {
  readonly round: CheckpointRound;
  readonly log: { event: RoundEvent; effects: RoundEffect[] }[] = [];

  constructor(readonly plan: RoundPlan) {
    this.round = new CheckpointRound(plan);
  }

  send(event: RoundEvent): RoundEffect[] {
    const effects = this.round.handle(event);
    this.log.push({ event, effects });
    return effects;
  }

  get effects(): RoundEffect[] {
    return this.log.flatMap((l) => l.effects);
  }

  /** start + fences-published, returning the prepare effects. */
  prepare(atMs = 2_000): RoundEffect[] {
    expect(this.send({ type: 'start' })).toEqual([{ type: 'publish-fences', epoch: this.plan.epoch, vhosts: this.plan.vhosts }]);
    return this.send({ type: 'fences-published', atMs });
  }
}

function only<T extends RoundEffect['type']>(effects: RoundEffect[], type: T): Extract<RoundEffect, { type: T }>[] {
  return effects.filter((e): e is Extract<RoundEffect, { type: T }> => e.type === type);
}

/** Runs a default round to its commit and returns the manifest it asked to write. */
function commitDefault(plan: RoundPlan, perQueue?: (q: QueueSpec) => EntryOptions): { driver: Driver; manifest: CheckpointManifest } {
  const driver = new Driver(plan);
  driver.prepare(2_000);
  for (const p of plan.participants) driver.send(vote(p.workerId, fullYes(plan, p.workerId, perQueue)));
  const written = driver.send({ type: 'decision-recorded', atMs: 3_000 });
  expect(written).toHaveLength(1);
  expect(written[0].type).toBe('write-manifest');
  return { driver, manifest: (written[0] as Extract<RoundEffect, { type: 'write-manifest' }>).manifest };
}

// ---------------------------------------------------------------------------------------------
// The happy path
// ---------------------------------------------------------------------------------------------

describe('checkpoint round: commit path', () => {
  it('publishes fences for every vhost of the round on start, and nothing else', () => {
    const plan = makePlan();
    const round = new CheckpointRound(plan);
    expect(round.handle({ type: 'start' })).toEqual([{ type: 'publish-fences', epoch: 9, vhosts: ['/', 'prod'] }]);
    expect(round.state).toBe('fencing');
    // A second start is a no-op: fences are published once per round.
    expect(round.handle({ type: 'start' })).toEqual([]);
  });

  it('sends exactly one prepare per participant, each with that participant\'s queues, only after the fences are published', () => {
    const plan = makePlan();
    const driver = new Driver(plan);
    driver.send({ type: 'start' });
    // Votes before the fence is confirmed cannot be trusted to cover it: ignored.
    expect(driver.send(vote('worker-a', fullYes(plan, 'worker-a')))).toEqual([]);
    const prepares = driver.send({ type: 'fences-published', atMs: 2_000 });
    expect(prepares).toHaveLength(2);
    expect(prepares.every((e) => e.type === 'prepare' && e.epoch === 9)).toBe(true);
    expect(only(prepares, 'prepare').map((e) => e.participant)).toEqual(plan.participants);
    // A repeated fences-published does not re-prepare.
    expect(driver.send({ type: 'fences-published', atMs: 2_500 })).toEqual([]);
  });

  it('records COMMIT once every participant voted YES covering its queues, and not before', () => {
    const plan = makePlan();
    const driver = new Driver(plan);
    driver.prepare();
    expect(driver.send(vote('worker-b', fullYes(plan, 'worker-b')))).toEqual([]);
    expect(driver.round.decision).toBeUndefined();
    const effects = driver.send(vote('worker-a', fullYes(plan, 'worker-a')));
    expect(effects).toMatchObject([{ type: 'record-decision', epoch: 9, decision: 'committed', reason: '' }]);
    // The COMMIT record carries what a new leader needs to finish the round: every YES partition.
    const commit = (effects[0] as Extract<RoundEffect, { type: 'record-decision' }>).commit!;
    expect(commit).toMatchObject({ roundId: plan.roundId, parentEpoch: plan.parentEpoch, leaderToken: plan.leaderToken, fencedAtMs: 2000 });
    expect(commit.partitions.map((p) => p.workerId).sort()).toEqual(['worker-a', 'worker-b']);
    expect(driver.round.decision).toBe('committed');
  });

  it('asks for the manifest only after the COMMIT is recorded, then tells workers only after the manifest landed (I2, I3)', () => {
    const plan = makePlan();
    const driver = new Driver(plan);
    driver.prepare();
    driver.send(vote('worker-a', fullYes(plan, 'worker-a')));
    driver.send(vote('worker-b', fullYes(plan, 'worker-b')));
    // Anything before decision-recorded must not write the manifest or tell workers.
    expect(driver.send({ type: 'manifest-written' })).toEqual([]);
    expect(driver.send({ type: 'deadline' })).toEqual([]);
    expect(only(driver.effects, 'write-manifest')).toEqual([]);
    expect(only(driver.effects, 'send-decision')).toEqual([]);

    const afterRecord = driver.send({ type: 'decision-recorded', atMs: 3_000 });
    expect(afterRecord.map((e) => e.type)).toEqual(['write-manifest']);
    // Workers hear nothing until the manifest is written.
    expect(only(driver.effects, 'send-decision')).toEqual([]);
    expect(driver.send({ type: 'decision-recorded', atMs: 3_500 })).toEqual([]);

    const afterWrite = driver.send({ type: 'manifest-written' });
    expect(afterWrite).toEqual([
      { type: 'send-decision', epoch: 9, decision: 'committed', workerIds: ['worker-b', 'worker-a'] },
      { type: 'finish', epoch: 9, outcome: 'committed', reason: '' },
    ]);
    expect(driver.round.state).toBe('done');
    // Done is final.
    expect(driver.send({ type: 'manifest-written' })).toEqual([]);
    expect(driver.send({ type: 'decision-recorded', atMs: 4_000 })).toEqual([]);
  });

  it('builds the manifest from the plan and the votes: header fields, fences and exchanges', () => {
    const plan = makePlan({ epoch: 12, parentEpoch: 5 });
    const { manifest } = commitDefault(plan);
    expect(manifest.formatVersion).toBe(1);
    expect(manifest.epoch).toBe(12);
    expect(manifest.parentEpoch).toBe(5);
    expect(manifest.startedAtMs).toBe(1_000);
    expect(manifest.committedAtMs).toBe(3_000);
    expect(manifest.leaderToken).toBe(42);
    expect(manifest.coordinatorId).toBe('coord-1');
    expect(manifest.fences).toEqual([
      { vhost: '/', exchange: 'tidemark.fence', publishedAtMs: 2_000 },
      { vhost: 'prod', exchange: 'tidemark.fence', publishedAtMs: 2_000 },
    ]);
    expect(manifest.exchanges).toEqual(EXCHANGES);
  });

  it('puts every queue in the manifest once, sorted by vhost then name, with the voted cuts and segments', () => {
    const plan = makePlan();
    const cuts: Record<string, number> = { alpha: 11, 'mid.dle': 22, zeta: 33, billing: 44 };
    const { manifest } = commitDefault(plan, (q) => ({ cut: cuts[q.name], start: 1, messages: cuts[q.name] - 1, bodyBytes: cuts[q.name] * 10 }));
    expect(manifest.queues.map((q) => `${q.definition!.vhost}/${q.definition!.name}`)).toEqual(['//alpha', '//mid.dle', '//zeta', 'prod/billing']);
    for (const q of manifest.queues) {
      const name = q.definition!.name;
      expect(q.cutOffset).toBe(cuts[name]);
      expect(q.startOffset).toBe(1);
      expect(q.messages).toBe(cuts[name] - 1);
      expect(q.bodyBytes).toBe(cuts[name] * 10);
      expect(q.segments).toHaveLength(1);
      expect(q.segments[0].lastOffset).toBe(cuts[name]);
    }
    // Who captured it: the voter.
    expect(Object.fromEntries(manifest.queues.map((q) => [q.definition!.name, q.workerId]))).toEqual({
      alpha: 'worker-a',
      'mid.dle': 'worker-a',
      zeta: 'worker-b',
      billing: 'worker-b',
    });
  });

  it('sums messages and body bytes over every queue', () => {
    const plan = makePlan();
    const sizes: Record<string, [number, number]> = { alpha: [1, 10], 'mid.dle': [20, 200], zeta: [300, 3_000], billing: [4_000, 40_000] };
    const { manifest } = commitDefault(plan, (q) => ({ messages: sizes[q.name][0], bodyBytes: sizes[q.name][1] }));
    expect(manifest.messages).toBe(4_321);
    expect(manifest.bodyBytes).toBe(43_210);
  });

  it('takes each queue\'s definition and journal from the plan, not from the vote', () => {
    const plan = makePlan();
    const { manifest } = commitDefault(plan);
    for (const q of manifest.queues) {
      const planned = plan.queues.get(queueKey(q.definition!.vhost, q.definition!.name))!;
      expect(q.definition).toEqual(planned.definition);
      expect(q.definition!.type).toBe('quorum');
      expect(q.definition!.bindings).toHaveLength(1);
      expect(q.journal).toBe(planned.journal);
    }
  });

  it('marks the manifest full only when every queue has base 0', () => {
    const plan = makePlan({ visible: [3, 5] });
    expect(commitDefault(plan).manifest.full).toBe(true);
    const incremental = commitDefault(makePlan({ visible: [3, 5] }), (q) => ({ base: q.name === 'zeta' ? 5 : 0 }));
    expect(incremental.manifest.full).toBe(false);
    expect(incremental.manifest.queues.find((q) => q.definition!.name === 'zeta')!.baseEpoch).toBe(5);
    expect(commitDefault(makePlan({ visible: [3, 5] }), () => ({ base: 3 })).manifest.full).toBe(false);
  });

  it('ignores a vote from a worker that is not a participant', () => {
    const plan = makePlan();
    const driver = new Driver(plan);
    driver.prepare();
    driver.send(vote('worker-a', fullYes(plan, 'worker-a')));
    expect(driver.send(vote('intruder', yes('intruder', [])))).toEqual([]);
    expect(driver.send(vote('intruder', no('intruder', 'nope')))).toEqual([]);
    expect(driver.round.decision).toBeUndefined();
    expect(only(driver.send(vote('worker-b', fullYes(plan, 'worker-b'))), 'record-decision')[0].decision).toBe('committed');
  });

  it('treats a repeated YES from the same worker as one vote', () => {
    const plan = makePlan();
    const driver = new Driver(plan);
    driver.prepare();
    expect(driver.send(vote('worker-a', fullYes(plan, 'worker-a')))).toEqual([]);
    // Without dedup this second copy would make two votes and commit without worker-b.
    expect(driver.send(vote('worker-a', fullYes(plan, 'worker-a')))).toEqual([]);
    expect(driver.round.decision).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// Aborts
// ---------------------------------------------------------------------------------------------

/** Asserts the round aborted with a reason containing `text` and never asks for a manifest. */
function expectAborted(driver: Driver, text: string | RegExp): void {
  const records = only(driver.effects, 'record-decision');
  expect(records).toHaveLength(1);
  expect(records[0].decision).toBe('aborted');
  if (typeof text === 'string') expect(records[0].reason).toContain(text);
  else expect(records[0].reason).toMatch(text);
  expect(driver.round.decision).toBe('aborted');
  // Presumed abort: after the ABORT is recorded, workers are told and the round finishes.
  const end = driver.send({ type: 'decision-recorded', atMs: 9_000 });
  expect(end).toEqual([
    { type: 'send-decision', epoch: driver.plan.epoch, decision: 'aborted', workerIds: driver.plan.participants.map((p) => p.workerId) },
    { type: 'finish', epoch: driver.plan.epoch, outcome: 'aborted', reason: records[0].reason },
  ]);
  driver.send({ type: 'manifest-written' });
  // No manifest, ever, for an aborted round (G1).
  expect(only(driver.effects, 'write-manifest')).toEqual([]);
}

describe('checkpoint round: aborts', () => {
  it('aborts on a NO vote with the worker\'s reason, and never writes a manifest even if others said YES', () => {
    const plan = makePlan();
    const driver = new Driver(plan);
    driver.prepare();
    driver.send(vote('worker-a', fullYes(plan, 'worker-a')));
    const effects = driver.send(vote('worker-b', no('worker-b', 'journal tidemark.journal.zeta is missing')));
    expect(effects).toEqual([{ type: 'record-decision', epoch: 9, decision: 'aborted', reason: 'journal tidemark.journal.zeta is missing' }]);
    expectAborted(driver, 'journal tidemark.journal.zeta is missing');
  });

  it('names the worker when a NO vote carries no reason', () => {
    const plan = makePlan();
    const driver = new Driver(plan);
    driver.prepare();
    driver.send(vote('worker-b', no('worker-b', '')));
    expectAborted(driver, 'worker-b');
  });

  it('aborts when a vote is VOTE_UNSPECIFIED (not a YES)', () => {
    const plan = makePlan();
    const driver = new Driver(plan);
    driver.prepare();
    driver.send(vote('worker-a', { ...fullYes(plan, 'worker-a'), vote: Vote.VOTE_UNSPECIFIED }));
    driver.send(vote('worker-b', fullYes(plan, 'worker-b')));
    expectAborted(driver, 'worker-a');
  });

  it('aborts when a prepare call fails, naming the worker and the error', () => {
    const plan = makePlan();
    const driver = new Driver(plan);
    driver.prepare();
    driver.send(vote('worker-a', fullYes(plan, 'worker-a')));
    driver.send({ type: 'prepare-failed', workerId: 'worker-b', reason: 'UNAVAILABLE: connection refused' });
    expectAborted(driver, /worker-b.*UNAVAILABLE: connection refused/);
  });

  it('aborts when the fence cannot be published, without preparing anyone', () => {
    const plan = makePlan();
    const driver = new Driver(plan);
    driver.send({ type: 'start' });
    driver.send({ type: 'fences-failed', reason: 'channel closed' });
    expect(only(driver.effects, 'prepare')).toEqual([]);
    expectAborted(driver, 'channel closed');
  });

  it('aborts at the deadline naming the worker that has not voted, and only that one', () => {
    const plan = makePlan();
    const driver = new Driver(plan);
    driver.prepare();
    driver.send(vote('worker-b', fullYes(plan, 'worker-b')));
    driver.send({ type: 'deadline' });
    const reason = only(driver.effects, 'record-decision')[0].reason;
    expect(reason).toContain('worker-a');
    expect(reason).not.toContain('worker-b');
    expectAborted(driver, 'deadline');
  });

  it('aborts at a deadline that passes while the fence is still being published', () => {
    const plan = makePlan();
    const driver = new Driver(plan);
    driver.send({ type: 'start' });
    driver.send({ type: 'deadline' });
    // A late fence confirmation must not start a prepare.
    expect(driver.send({ type: 'fences-published', atMs: 5_000 })).toEqual([]);
    expectAborted(driver, 'deadline');
  });

  it('aborts on a YES that leaves out a queue it was asked for', () => {
    const plan = makePlan();
    const driver = new Driver(plan);
    driver.prepare();
    const partial = fullYes(plan, 'worker-a');
    partial.queues = partial.queues.filter((q) => q.definition!.name !== 'mid.dle');
    driver.send(vote('worker-b', fullYes(plan, 'worker-b')));
    driver.send(vote('worker-a', partial));
    expectAborted(driver, /worker-a voted YES but left out 1 queue/);
  });

  it('aborts on a YES with no queues at all', () => {
    const plan = makePlan();
    const driver = new Driver(plan);
    driver.prepare();
    driver.send(vote('worker-a', yes('worker-a', [])));
    driver.send(vote('worker-b', fullYes(plan, 'worker-b')));
    expectAborted(driver, 'left out 2 queue(s)');
  });

  it('aborts on a YES that reports a queue it was not asked for, even one another worker owns', () => {
    const plan = makePlan();
    const driver = new Driver(plan);
    driver.prepare();
    const extra = fullYes(plan, 'worker-a');
    extra.queues.push(entry({ vhost: '/', name: 'zeta' }));
    driver.send(vote('worker-a', extra));
    driver.send(vote('worker-b', fullYes(plan, 'worker-b')));
    expectAborted(driver, /worker-a.*\/zeta.*not asked/);
  });

  it('does not confuse a queue of the same name in another vhost with the one asked for', () => {
    const plan = makePlan();
    const driver = new Driver(plan);
    driver.prepare();
    const wrongVhost = fullYes(plan, 'worker-a');
    wrongVhost.queues[0] = entry({ vhost: 'prod', name: 'alpha' });
    driver.send(vote('worker-a', wrongVhost));
    driver.send(vote('worker-b', fullYes(plan, 'worker-b')));
    expectAborted(driver, 'prod/alpha');
  });

  it('aborts on a YES whose base epoch is not a visible checkpoint', () => {
    const plan = makePlan({ visible: [3, 5] });
    const driver = new Driver(plan);
    driver.prepare();
    driver.send(vote('worker-a', fullYes(plan, 'worker-a', () => ({ base: 4 }))));
    driver.send(vote('worker-b', fullYes(plan, 'worker-b')));
    expectAborted(driver, /checkpoint 4, which is not visible/);
  });

  it('aborts on a YES whose cut lies before its start', () => {
    const plan = makePlan();
    const driver = new Driver(plan);
    driver.prepare();
    driver.send(vote('worker-a', fullYes(plan, 'worker-a', (q) => (q.name === 'alpha' ? { start: 50, cut: 10 } : {}))));
    driver.send(vote('worker-b', fullYes(plan, 'worker-b')));
    expectAborted(driver, 'cut 10 before start 50');
  });

  it('aborts at start, without fences, when the round has no queues', () => {
    const driver = new Driver(makePlan({ assignment: { 'worker-a': [] }, queues: [] }));
    const effects = driver.send({ type: 'start' });
    expect(effects.map((e) => e.type)).toEqual(['record-decision']);
    expect(only(driver.effects, 'publish-fences')).toEqual([]);
    expectAborted(driver, 'no protected queues');
  });

  it('aborts at start, without fences, when there are no participants', () => {
    const driver = new Driver(makePlan({ assignment: {}, queues: [{ vhost: '/', name: 'alpha' }] }));
    const effects = driver.send({ type: 'start' });
    expect(effects.map((e) => e.type)).toEqual(['record-decision']);
    expectAborted(driver, 'no live workers');
    expect(only(driver.effects, 'publish-fences')).toEqual([]);
    expect(only(driver.effects, 'prepare')).toEqual([]);
  });

  it('names why queues have no worker (the last assignment pass\'s failures) in the abort reason', () => {
    const plan = makePlan({ assignment: { 'worker-a': [{ vhost: '/', name: 'alpha' }] }, queues: [{ vhost: '/', name: 'alpha' }, { vhost: 'prod', name: 'orphan' }] });
    plan.unassignedWhy = 'worker worker-b did not take its 1 queue(s): connect ECONNREFUSED';
    const driver = new Driver(plan);
    driver.send({ type: 'start' });
    expect(driver.round.reason).toBe('no worker was assigned prod/orphan (worker worker-b did not take its 1 queue(s): connect ECONNREFUSED)');
  });

  it('aborts at start, without fences, when a queue of the round is assigned to no worker, naming it', () => {
    const driver = new Driver(
      makePlan({
        assignment: { 'worker-a': [{ vhost: '/', name: 'alpha' }] },
        queues: [
          { vhost: '/', name: 'alpha' },
          { vhost: 'prod', name: 'orphan' },
        ],
      }),
    );
    driver.send({ type: 'start' });
    expect(only(driver.effects, 'publish-fences')).toEqual([]);
    expectAborted(driver, 'prod/orphan');
    // Nothing later revives it.
    expect(driver.send({ type: 'fences-published', atMs: 1 })).toEqual([]);
    expect(driver.send(vote('worker-a', yes('worker-a', [entry({ vhost: '/', name: 'alpha' })])))).toEqual([]);
  });

  it('never commits a queue assigned to no worker even when every participant votes YES', () => {
    // Same as above, but checked from the outcome a user would see: no committed manifest.
    const plan = makePlan({
      assignment: { 'worker-a': [{ vhost: '/', name: 'alpha' }] },
      queues: [
        { vhost: '/', name: 'alpha' },
        { vhost: '/', name: 'beta' },
      ],
    });
    const driver = new Driver(plan);
    driver.send({ type: 'start' });
    driver.send({ type: 'fences-published', atMs: 1 });
    driver.send(vote('worker-a', yes('worker-a', [entry({ vhost: '/', name: 'alpha' })])));
    driver.send({ type: 'decision-recorded', atMs: 2 });
    driver.send({ type: 'manifest-written' });
    expect(only(driver.effects, 'write-manifest')).toEqual([]);
    expect(only(driver.effects, 'finish').map((f) => f.outcome)).toEqual(['aborted']);
  });
});

// ---------------------------------------------------------------------------------------------
// I4: a decision never changes
// ---------------------------------------------------------------------------------------------

describe('checkpoint round: decisions are final (I4)', () => {
  it('ignores late YES votes after an abort', () => {
    const plan = makePlan();
    const driver = new Driver(plan);
    driver.prepare();
    driver.send(vote('worker-a', no('worker-a', 'disk full')));
    expect(driver.send(vote('worker-b', fullYes(plan, 'worker-b')))).toEqual([]);
    expect(driver.send(vote('worker-a', fullYes(plan, 'worker-a')))).toEqual([]);
    expect(driver.round.decision).toBe('aborted');
    expect(driver.round.reason).toBe('disk full');
    expectAborted(driver, 'disk full');
  });

  it('ignores a late NO, a failed prepare and the deadline after a commit', () => {
    const plan = makePlan();
    const driver = new Driver(plan);
    driver.prepare();
    driver.send(vote('worker-a', fullYes(plan, 'worker-a')));
    driver.send(vote('worker-b', fullYes(plan, 'worker-b')));
    expect(driver.send(vote('worker-a', no('worker-a', 'changed my mind')))).toEqual([]);
    expect(driver.send({ type: 'prepare-failed', workerId: 'worker-b', reason: 'late' })).toEqual([]);
    expect(driver.send({ type: 'deadline' })).toEqual([]);
    expect(driver.send({ type: 'fences-failed', reason: 'late' })).toEqual([]);
    expect(driver.send({ type: 'start' })).toEqual([]);
    expect(driver.round.decision).toBe('committed');
    // And still after the decision is recorded and while the manifest is being written.
    driver.send({ type: 'decision-recorded', atMs: 3_000 });
    expect(driver.send({ type: 'deadline' })).toEqual([]);
    expect(driver.send(vote('worker-b', no('worker-b', 'late')))).toEqual([]);
    const end = driver.send({ type: 'manifest-written' });
    expect(only(end, 'finish')).toEqual([{ type: 'finish', epoch: 9, outcome: 'committed', reason: '' }]);
    expect(only(driver.effects, 'record-decision')).toHaveLength(1);
  });

  it('ignores a second deadline and a second failure after an abort: one ABORT record, its first reason kept', () => {
    const plan = makePlan();
    const driver = new Driver(plan);
    driver.prepare();
    driver.send({ type: 'prepare-failed', workerId: 'worker-a', reason: 'first' });
    expect(driver.send({ type: 'prepare-failed', workerId: 'worker-b', reason: 'second' })).toEqual([]);
    expect(driver.send({ type: 'deadline' })).toEqual([]);
    expect(driver.round.reason).toContain('first');
    expectAborted(driver, 'first');
  });
});

// ---------------------------------------------------------------------------------------------
// Bugs found (the machine must not accept these)
// ---------------------------------------------------------------------------------------------

describe('checkpoint round: malformed plans and votes', () => {
  // Regression (was a bug in services/coordinator/checkpoint-round.ts, checkYes ~line 156): a YES vote that reports
  // the same queue twice passes the coverage check (the `answered` set hides the duplicate), so
  // the round commits and buildManifest writes that queue twice, with possibly different cuts.
  // A checkpoint with two entries for one queue is ambiguous about its prefix (G2).
  it('aborts on a YES that reports the same queue twice', () => {
    const plan = makePlan();
    const driver = new Driver(plan);
    driver.prepare();
    const twice = fullYes(plan, 'worker-a');
    twice.queues.push(entry({ vhost: '/', name: 'alpha' }, { cut: 7 }));
    driver.send(vote('worker-a', twice));
    driver.send(vote('worker-b', fullYes(plan, 'worker-b')));
    expect(only(driver.effects, 'record-decision')[0].decision).toBe('aborted');
  });

  // Regression (was a bug in services/coordinator/checkpoint-round.ts, 'start' ~line 89-96 and buildManifest ~line 189):
  // start checks that every plan queue is assigned, but not that every assigned queue is in the
  // plan. When a participant is asked for a queue outside plan.queues (e.g. an assignment that
  // still holds a queue discovery has just dropped), every worker can vote YES, COMMIT is
  // recorded, and then handle('decision-recorded') throws
  // "TypeError: Cannot read properties of undefined (reading 'definition')" — the round dies
  // after COMMIT is durable with no manifest written. It should abort at start (or leave such
  // queues out) instead.
  it('does not crash after COMMIT when a participant was asked for a queue outside the plan', () => {
    const plan = makePlan({
      assignment: {
        'worker-a': [
          { vhost: '/', name: 'alpha' },
          { vhost: '/', name: 'dropped' },
        ],
      },
      queues: [{ vhost: '/', name: 'alpha' }],
    });
    const driver = new Driver(plan);
    const drive = () => {
      driver.send({ type: 'start' });
      driver.send({ type: 'fences-published', atMs: 1 });
      driver.send(vote('worker-a', fullYes(plan, 'worker-a')));
      driver.send({ type: 'decision-recorded', atMs: 2 });
      driver.send({ type: 'manifest-written' });
    };
    expect(drive).not.toThrow();
    const finish = only(driver.effects, 'finish');
    expect(finish).toHaveLength(1);
    const manifests = only(driver.effects, 'write-manifest');
    if (finish[0].outcome === 'committed') {
      expect(manifests[0].manifest.queues.map((q) => q.definition!.name)).toEqual(['alpha']);
    } else {
      expect(manifests).toEqual([]);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Randomized property test
// ---------------------------------------------------------------------------------------------

/** mulberry32: small, seeded, reproducible. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type VoteKind = 'good-yes' | 'no' | 'yes-missing' | 'yes-extra' | 'yes-invisible-base';

interface Scenario {
  plan: RoundPlan;
  events: RoundEvent[];
  /** For each vote event (by index in events), what kind it is. */
  kinds: Map<number, VoteKind>;
}

function randomScenario(seed: number): Scenario {
  const r = rng(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)];
  const nWorkers = 1 + Math.floor(r() * 4);
  const assignment: Record<string, QueueSpec[]> = {};
  let n = 0;
  for (let w = 0; w < nWorkers; w++) {
    const qs: QueueSpec[] = [];
    const count = 1 + Math.floor(r() * 3);
    for (let i = 0; i < count; i++) qs.push({ vhost: pick(['/', 'prod', 'dev']), name: `q${n++}` });
    assignment[`w${w}`] = qs;
  }
  const plan = makePlan({ assignment, visible: [3, 5] });
  const workers = Object.keys(assignment);

  const pool: { event: RoundEvent; kind?: VoteKind }[] = [];
  // Most workers vote YES properly so that commits happen often enough to exercise that path.
  for (const w of workers) {
    const roll = r();
    const kind: VoteKind =
      roll < 0.75 ? 'good-yes' : roll < 0.85 ? 'no' : roll < 0.9 ? 'yes-missing' : roll < 0.95 ? 'yes-extra' : 'yes-invisible-base';
    pool.push({ event: vote(w, makeVote(plan, w, kind)), kind });
    // Duplicates, possibly of a different kind (a retried RPC, a confused worker).
    if (r() < 0.3) {
      const dupKind = r() < 0.7 ? kind : pick<VoteKind>(['good-yes', 'no', 'yes-missing']);
      pool.push({ event: vote(w, makeVote(plan, w, dupKind)), kind: dupKind });
    }
    if (r() < 0.05) pool.push({ event: { type: 'prepare-failed', workerId: w, reason: 'timeout' } });
  }
  if (r() < 0.2) pool.push({ event: vote('stranger', makeVote(plan, workers[0], 'good-yes')) });
  const deadlines = r() < 0.3 ? 1 : r() < 0.8 ? 0 : 2;
  for (let i = 0; i < deadlines; i++) pool.push({ event: { type: 'deadline' } });
  // Usually the fence is confirmed first; sometimes votes or the deadline race ahead of it.
  const fenceFirst = r() < 0.7;
  if (!fenceFirst) pool.push({ event: { type: 'fences-published', atMs: 100 } });
  if (r() < 0.2) pool.push({ event: { type: 'fences-published', atMs: 150 } });
  if (r() < 0.05) pool.push({ event: { type: 'fences-failed', reason: 'broker down' } });
  // Completion events arrive at random moments, possibly too early and possibly twice.
  for (let i = 0, k = Math.floor(r() * 3); i < k; i++) pool.push({ event: { type: 'decision-recorded', atMs: 200 + i } });
  for (let i = 0, k = Math.floor(r() * 3); i < k; i++) pool.push({ event: { type: 'manifest-written' } });
  if (r() < 0.2) pool.push({ event: { type: 'start' } });

  // Fisher–Yates.
  for (let i = pool.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  const events: RoundEvent[] = [{ type: 'start' }];
  if (fenceFirst) events.push({ type: 'fences-published', atMs: 100 });
  const kinds = new Map<number, VoteKind>();
  for (const p of pool) {
    if (p.kind) kinds.set(events.length, p.kind);
    events.push(p.event);
  }
  // The runner's timer always fires eventually, and it always reports completion.
  events.push({ type: 'deadline' }, { type: 'decision-recorded', atMs: 999 }, { type: 'manifest-written' });
  return { plan, events, kinds };
}

function makeVote(plan: RoundPlan, workerId: string, kind: VoteKind): PrepareReply {
  switch (kind) {
    case 'good-yes':
      return fullYes(plan, workerId);
    case 'no':
      return no(workerId, `${workerId} cannot prepare`);
    case 'yes-missing': {
      const v = fullYes(plan, workerId);
      v.queues = v.queues.slice(1);
      return v;
    }
    case 'yes-extra': {
      const v = fullYes(plan, workerId);
      v.queues.push(entry({ vhost: 'elsewhere', name: 'not-asked' }));
      return v;
    }
    case 'yes-invisible-base':
      return fullYes(plan, workerId, () => ({ base: 4 }));
  }
}

/** An independent model of what the outcome must be. */
function expectedOutcome(s: Scenario): 'committed' | 'aborted' {
  const participants = new Set(s.plan.participants.map((p) => p.workerId));
  let state: 'fencing' | 'preparing' = 'fencing';
  const good = new Set<string>();
  for (let i = 1; i < s.events.length; i++) {
    const e = s.events[i];
    if (state === 'fencing') {
      if (e.type === 'fences-published') state = 'preparing';
      else if (e.type === 'fences-failed' || e.type === 'deadline') return 'aborted';
      continue;
    }
    if (e.type === 'deadline' || e.type === 'prepare-failed') return 'aborted';
    if (e.type === 'vote' && participants.has(e.workerId)) {
      if (s.kinds.get(i) !== 'good-yes') return 'aborted';
      good.add(e.workerId);
      if (good.size === participants.size) return 'committed';
    }
  }
  return 'aborted';
}

describe('checkpoint round: randomized event sequences', () => {
  it('keeps its invariants over 500 seeded random interleavings', () => {
    const outcomes = { committed: 0, aborted: 0, undecided: 0 };
    for (let seed = 1; seed <= 500; seed++) {
      const s = randomScenario(seed);
      const round = new CheckpointRound(s.plan);
      const participants = s.plan.participants.map((p) => p.workerId);
      const goodVoters = new Set<string>();
      let recorded: 'committed' | 'aborted' | undefined;
      let recordedSeen = false; // a decision-recorded event arrived after the record-decision effect
      let manifestWritten = false;
      let writeManifests = 0;
      let finishes = 0;
      const ctx = (i: number) => `seed ${seed}, event ${i} (${JSON.stringify(s.events[i].type)})`;

      s.events.forEach((event, i) => {
        const stateBefore = round.state;
        const effects = round.handle(event);
        // A vote only counts once the fence is out and before anything was decided.
        if (event.type === 'vote' && s.kinds.get(i) === 'good-yes' && stateBefore === 'preparing') goodVoters.add(event.workerId);
        for (const effect of effects) {
          switch (effect.type) {
            case 'record-decision':
              // At most one decision, ever.
              expect(recorded, ctx(i)).toBeUndefined();
              recorded = effect.decision;
              expect(effect.epoch).toBe(s.plan.epoch);
              // Committed only if every participant voted a YES that covered its queues (I1).
              if (effect.decision === 'committed') {
                for (const w of participants) expect(goodVoters.has(w), `${ctx(i)}: committed without a good YES from ${w}`).toBe(true);
              }
              break;
            case 'write-manifest':
              // Only in answer to decision-recorded, after a recorded COMMIT (I2, I3).
              expect(event.type, ctx(i)).toBe('decision-recorded');
              expect(recorded, ctx(i)).toBe('committed');
              writeManifests++;
              expect(effect.manifest.epoch).toBe(s.plan.epoch);
              expect(effect.manifest.queues).toHaveLength(s.plan.queues.size);
              break;
            case 'send-decision':
              expect(effect.decision, ctx(i)).toBe(recorded);
              if (recorded === 'committed') {
                // Workers hear COMMIT only once the manifest landed.
                expect(event.type, ctx(i)).toBe('manifest-written');
                expect(writeManifests).toBe(1);
              } else {
                expect(event.type, ctx(i)).toBe('decision-recorded');
              }
              break;
            case 'finish':
              finishes++;
              expect(effect.outcome, ctx(i)).toBe(recorded);
              break;
            case 'publish-fences':
              expect(i, ctx(i)).toBe(0);
              break;
            case 'prepare':
              expect(event.type, ctx(i)).toBe('fences-published');
              break;
          }
        }
        if (event.type === 'decision-recorded' && recorded !== undefined) recordedSeen = true;
        if (event.type === 'manifest-written' && writeManifests > 0) manifestWritten = true;
        // The machine's own view never contradicts the effects it returned (I4).
        expect(round.decision, ctx(i)).toBe(recorded);
      });

      expect(writeManifests, `seed ${seed}`).toBeLessThanOrEqual(1);
      expect(finishes, `seed ${seed}`).toBeLessThanOrEqual(1);
      expect(recorded, `seed ${seed}`).toBe(expectedOutcome(s));
      // The trailing decision-recorded / manifest-written always complete the round.
      expect(recordedSeen, `seed ${seed}`).toBe(true);
      expect(finishes, `seed ${seed}`).toBe(1);
      if (recorded === 'committed') expect(manifestWritten, `seed ${seed}`).toBe(true);
      outcomes[recorded ?? 'undecided']++;
    }
    // The generator must exercise both outcomes, or the test proves little.
    expect(outcomes.committed).toBeGreaterThan(50);
    expect(outcomes.aborted).toBeGreaterThan(50);
    expect(outcomes.undecided).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// I5: queues whose history may lack confirmed messages are marked, and stay marked
// ---------------------------------------------------------------------------------------------

describe('checkpoint round: possibly incomplete queues (I5)', () => {
  const restartedRoot = [{ vhost: '/', reason: 'the broker restarted' }];

  /** Commits `plan`, telling the machine which vhosts restarted before the fence. */
  function commitWith(plan: RoundPlan, restarted: { vhost: string; reason: string }[]) {
    const driver = new Driver(plan);
    driver.send({ type: 'start' });
    driver.send({ type: 'fences-published', atMs: 2_000, restarted });
    const decided = plan.participants.flatMap((p) => driver.send(vote(p.workerId, fullYes(plan, p.workerId, () => ({ cut: 120 })))));
    const commit = only(decided, 'record-decision')[0].commit!;
    const written = only(driver.send({ type: 'decision-recorded', atMs: 3_000 }), 'write-manifest')[0];
    return { commit, manifest: written.manifest };
  }

  const marksOf = (m: CheckpointManifest) => Object.fromEntries(m.queues.map((q) => [`${q.definition!.vhost}:${q.definition!.name}`, q.incomplete]));

  it('marks every queue of a vhost whose broker restarted before the fence, from its cut in the parent, and no other', () => {
    const plan = makePlan();
    plan.prior = new Map([[queueKey('/', 'alpha'), { cutOffset: 77, incomplete: [] }]]);
    const { manifest } = commitWith(plan, restartedRoot);
    const marks = marksOf(manifest);
    expect(marks['/:alpha']).toEqual([{ epoch: 9, reason: 'the broker restarted', detectedAtMs: 2_000, afterOffset: 77 }]);
    // No parent entry: the hole may start anywhere in what was captured.
    expect(marks['/:zeta']).toEqual([{ epoch: 9, reason: 'the broker restarted', detectedAtMs: 2_000, afterOffset: 0 }]);
    expect(marks['/:mid.dle']).toHaveLength(1);
    expect(marks['prod:billing']).toEqual([]);
  });

  it('keeps the parent checkpoint\'s marks of a queue in every later checkpoint, with no restart seen', () => {
    const plan = makePlan();
    const old = { epoch: 4, reason: 'the broker restarted', detectedAtMs: 500, afterOffset: 10 };
    plan.prior = new Map([[queueKey('prod', 'billing'), { cutOffset: 60, incomplete: [old] }]]);
    const { manifest } = commitWith(plan, []);
    const marks = marksOf(manifest);
    expect(marks['prod:billing']).toEqual([old]);
    expect(marks['/:alpha']).toEqual([]);
  });

  it('records the marks with the COMMIT, so a new leader rebuilds the same manifest from the record (recovery)', () => {
    const plan = makePlan();
    const old = { epoch: 4, reason: 'earlier restart', detectedAtMs: 500, afterOffset: 10 };
    plan.prior = new Map([[queueKey('/', 'alpha'), { cutOffset: 77, incomplete: [old] }]]);
    const { commit, manifest } = commitWith(plan, restartedRoot);
    expect(commit.marks?.filter((m) => m.queue === 'alpha').map((m) => m.mark.epoch)).toEqual([4, 9]);
    const partitions = plan.participants.map((p) => ({ workerId: p.workerId, queues: fullYes(plan, p.workerId, () => ({ cut: 120 })).queues }));
    const rebuilt = assembleManifest(plan.epoch, commit, 3_000, partitions);
    expect(marksOf(rebuilt)).toEqual(marksOf(manifest));
  });

  it('marks a renewed queue (its journal was replaced) from its start, instead of carrying the old journal\'s marks', () => {
    const plan = makePlan();
    const old = { epoch: 4, reason: 'earlier restart', detectedAtMs: 500, afterOffset: 10 };
    plan.prior = new Map([
      [queueKey('/', 'alpha'), { cutOffset: 77, incomplete: [old] }],
      [queueKey('prod', 'billing'), { cutOffset: 60, incomplete: [old] }],
    ]);
    plan.renewed = new Map([[queueKey('/', 'alpha'), 'not protected between T1 and T2: shed']]);
    const { manifest } = commitWith(plan, restartedRoot);
    const marks = marksOf(manifest);
    expect(marks['/:alpha']).toEqual([
      { epoch: 9, reason: 'not protected between T1 and T2: shed', detectedAtMs: 2_000, afterOffset: 0 },
      { epoch: 9, reason: 'the broker restarted', detectedAtMs: 2_000, afterOffset: 0 },
    ]);
    expect(marks['prod:billing']).toEqual([old]);
  });

  it('marks nothing when no restart is seen and the parent has no marks', () => {
    const { commit, manifest } = commitWith(makePlan(), []);
    expect(commit.marks).toBeUndefined();
    expect(manifest.queues.every((q) => q.incomplete.length === 0)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// G8: one queue that cannot take part never stops the others
// ---------------------------------------------------------------------------------------------

describe('checkpoint round: queues outside the cut (G8)', () => {
  /** The parent checkpoint (5) holds every default queue at cut 50, each in its own chain from 3. */
  function priorAll(extra: Partial<QueueCheckpoint> = {}): Map<string, PriorEntry> {
    const prior = new Map<string, PriorEntry>();
    for (const q of Object.values(DEFAULT_ASSIGNMENT).flat()) {
      const e = { ...entry(q, { cut: 50, messages: 5, base: 3 }), definition: plannedDef(q.vhost, q.name), workerId: 'worker-old', ...extra };
      prior.set(queueKey(q.vhost, q.name), { cutOffset: 50, incomplete: [], entry: e });
    }
    return prior;
  }

  function lenient(options: PlanOptions = {}): RoundPlan {
    return makePlan({ strict: false, prior: priorAll(), ...options });
  }

  /** Runs `plan` to the end with `votes` (worker → event), returning the effects of interest. */
  function run(plan: RoundPlan, votes: Record<string, RoundEvent | 'deadline'>) {
    const driver = new Driver(plan);
    driver.prepare(2_000);
    for (const [, v] of Object.entries(votes)) if (v !== 'deadline') driver.send(v);
    if (Object.values(votes).includes('deadline')) driver.send({ type: 'deadline' });
    const record = only(driver.effects, 'record-decision')[0];
    driver.send({ type: 'decision-recorded', atMs: 3_000 });
    const manifest = only(driver.effects, 'write-manifest')[0]?.manifest;
    driver.send({ type: 'manifest-written' });
    return { driver, record, manifest, send: only(driver.effects, 'send-decision')[0], finish: only(driver.effects, 'finish')[0] };
  }

  const names = (m: CheckpointManifest) => Object.fromEntries(m.queues.map((q) => [q.definition!.name, q.outsideCut ? `outside since ${q.outsideCut.sinceEpoch}` : 'inside']));

  it('commits the queues of the workers that voted YES and carries a NO worker\'s queues from the parent, marked outside the cut', () => {
    const plan = lenient();
    const { record, manifest, send, finish } = run(plan, {
      'worker-a': vote('worker-a', fullYes(plan, 'worker-a', () => ({ cut: 120 }))),
      'worker-b': vote('worker-b', no('worker-b', 'journal tidemark.journal.zeta was deleted')),
    });
    expect(record.decision).toBe('committed');
    expect(names(manifest)).toEqual({ alpha: 'inside', 'mid.dle': 'inside', zeta: 'outside since 5', billing: 'outside since 5' });
    const zeta = manifest.queues.find((q) => q.definition!.name === 'zeta')!;
    // The carried entry is the parent's entry as it was: its cut, counts and chain (base 3).
    expect(zeta).toMatchObject({ cutOffset: 50, messages: 5, baseEpoch: 3, workerId: 'worker-old' });
    expect(zeta.segments).toEqual(plan.prior!.get(queueKey('/', 'zeta'))!.entry!.segments);
    expect(zeta.outsideCut).toEqual({ sinceEpoch: 5, sinceMs: 2_000, reason: 'journal tidemark.journal.zeta was deleted' });
    expect(manifest.queues.find((q) => q.definition!.name === 'alpha')!.cutOffset).toBe(120);
    // The commit record says which queues are outside, so a new leader rebuilds the same manifest.
    expect(record.commit!.outside!.map((o) => `${o.queue}@${o.sinceEpoch}`)).toEqual(['zeta@5', 'billing@5']);
    expect(record.commit!.partitions.map((p) => p.workerId)).toEqual(['worker-a']);
    // Each worker hears what was counted of its vote: the NO worker nothing (so ABORT, keeping its base).
    expect(send.decision).toBe('committed');
    expect(send.counted!.get('worker-a')!.map((q) => q.queue)).toEqual(['alpha', 'mid.dle']);
    expect(send.counted!.get('worker-b')).toEqual([]);
    expect(finish.reason).toContain('2 queue(s) outside the cut');
    expect(finish.reason).toContain('zeta carried from checkpoint 5');
  });

  it('counts only the queues a YES vote prepared: a queue the worker lists as failed is carried, its other queues commit', () => {
    const plan = lenient();
    const partial = fullYes(plan, 'worker-b');
    partial.queues = partial.queues.filter((q) => q.definition!.name !== 'billing');
    partial.failed = [{ vhost: 'prod', queue: 'billing', reason: 'segment write failed: access denied' }];
    const { manifest, send } = run(plan, { 'worker-a': vote('worker-a', fullYes(plan, 'worker-a')), 'worker-b': vote('worker-b', partial) });
    expect(names(manifest)).toEqual({ alpha: 'inside', 'mid.dle': 'inside', zeta: 'inside', billing: 'outside since 5' });
    expect(manifest.queues.find((q) => q.definition!.name === 'billing')!.outsideCut!.reason).toBe('worker worker-b: segment write failed: access denied');
    expect(send.counted!.get('worker-b')!.map((q) => q.queue)).toEqual(['zeta']);
  });

  it('keeps since_epoch and since_ms of a queue already outside the parent\'s cut, with the new reason', () => {
    const plan = makePlan({ strict: false, prior: priorAll({ outsideCut: { sinceEpoch: 3, sinceMs: 700, reason: 'old reason' } }) });
    const { manifest } = run(plan, { 'worker-a': vote('worker-a', fullYes(plan, 'worker-a')), 'worker-b': { type: 'prepare-failed', workerId: 'worker-b', reason: 'UNAVAILABLE: connection refused' } });
    const zeta = manifest.queues.find((q) => q.definition!.name === 'zeta')!;
    expect(zeta.outsideCut).toEqual({ sinceEpoch: 3, sinceMs: 700, reason: 'worker worker-b did not vote: UNAVAILABLE: connection refused' });
    // Back inside: alpha voted YES this round, so its old mark is gone.
    expect(manifest.queues.find((q) => q.definition!.name === 'alpha')!.outsideCut).toBeUndefined();
  });

  it('leaves out a queue that cannot take part and that no checkpoint holds yet, and says so', () => {
    const prior = priorAll();
    prior.delete(queueKey('/', 'zeta'));
    const plan = makePlan({ strict: false, prior });
    const { manifest, record, finish } = run(plan, { 'worker-a': vote('worker-a', fullYes(plan, 'worker-a')), 'worker-b': 'deadline' });
    expect(names(manifest)).toEqual({ alpha: 'inside', 'mid.dle': 'inside', billing: 'outside since 5' });
    expect(record.commit!.outside!.find((o) => o.queue === 'zeta')).toMatchObject({ sinceEpoch: 0, reason: 'prepare deadline passed without a vote from worker worker-b' });
    expect(finish.reason).toContain('/zeta left out, no checkpoint holds it yet');
  });

  it('aborts when no queue at all is inside the cut, naming every problem', () => {
    const plan = lenient();
    const { record, manifest, send } = run(plan, {
      'worker-a': vote('worker-a', no('worker-a', 'worker-a: capture stopped')),
      'worker-b': { type: 'prepare-failed', workerId: 'worker-b', reason: 'DEADLINE_EXCEEDED' },
    });
    expect(record.decision).toBe('aborted');
    expect(record.reason).toBe('worker-a: capture stopped; worker worker-b did not vote: DEADLINE_EXCEEDED');
    expect(manifest).toBeUndefined();
    expect(send).toMatchObject({ decision: 'aborted' });
    expect(send.counted).toBeUndefined();
  });

  it('waits for every participant before deciding: a NO does not end the round early', () => {
    const plan = lenient();
    const driver = new Driver(plan);
    driver.prepare();
    expect(driver.send(vote('worker-b', no('worker-b', 'broken')))).toEqual([]);
    expect(driver.round.decision).toBeUndefined();
    expect(driver.send(vote('worker-a', fullYes(plan, 'worker-a')))).toMatchObject([{ type: 'record-decision', decision: 'committed' }]);
  });

  it('puts a queue of a YES whose base is not visible outside the cut, and commits the rest of that vote', () => {
    const plan = lenient();
    const bad = fullYes(plan, 'worker-a', (q) => (q.name === 'alpha' ? { base: 4 } : {}));
    const { manifest, send } = run(plan, { 'worker-a': vote('worker-a', bad), 'worker-b': vote('worker-b', fullYes(plan, 'worker-b')) });
    expect(names(manifest).alpha).toBe('outside since 5');
    expect(manifest.queues.find((q) => q.definition!.name === 'alpha')!.outsideCut!.reason).toContain('not visible');
    expect(send.counted!.get('worker-a')!.map((q) => q.queue)).toEqual(['mid.dle']);
  });

  it('carries a queue no worker was assigned, instead of aborting the round', () => {
    const plan = makePlan({
      strict: false,
      prior: priorAll(),
      assignment: { 'worker-a': [{ vhost: '/', name: 'alpha' }] },
      queues: [{ vhost: '/', name: 'alpha' }, { vhost: '/', name: 'zeta' }],
    });
    plan.unassignedWhy = 'worker w9 did not take its 1 queue(s): UNAVAILABLE';
    const { manifest } = run(plan, { 'worker-a': vote('worker-a', fullYes(plan, 'worker-a')) });
    expect(names(manifest)).toEqual({ alpha: 'inside', zeta: 'outside since 5' });
    expect(manifest.queues.find((q) => q.definition!.name === 'zeta')!.outsideCut!.reason).toBe('no worker was assigned it (worker w9 did not take its 1 queue(s): UNAVAILABLE)');
  });

  it('keeps a restart mark on a carried queue too: the hole after its old cut stays reported (I5)', () => {
    const plan = lenient();
    const driver = new Driver(plan);
    driver.send({ type: 'start' });
    driver.send({ type: 'fences-published', atMs: 2_000, restarted: [{ vhost: 'prod', reason: 'the broker restarted' }] });
    driver.send(vote('worker-a', fullYes(plan, 'worker-a')));
    driver.send(vote('worker-b', no('worker-b', 'down')));
    driver.send({ type: 'decision-recorded', atMs: 3_000 });
    const billing = only(driver.effects, 'write-manifest')[0].manifest.queues.find((q) => q.definition!.name === 'billing')!;
    expect(billing.outsideCut).toBeDefined();
    expect(billing.incomplete).toEqual([{ epoch: 9, reason: 'the broker restarted', detectedAtMs: 2_000, afterOffset: 50 }]);
  });

  it('rebuilds the same manifest from the commit record, the staged partitions and the parent checkpoint (recovery)', () => {
    const plan = lenient();
    const partial = fullYes(plan, 'worker-b', () => ({ cut: 130 }));
    // A staged partition may hold a queue the leader did not count (invisible base): never used.
    partial.queues[1] = entry({ vhost: 'prod', name: 'billing' }, { base: 4 });
    const { record, manifest } = run(plan, { 'worker-a': vote('worker-a', no('worker-a', 'down')), 'worker-b': vote('worker-b', partial) });
    const parent = [...plan.prior!.values()].map((p) => p.entry!);
    const rebuilt = assembleManifest(plan.epoch, record.commit!, 3_000, [{ workerId: 'worker-b', queues: partial.queues }], undefined, (vhost, queue) =>
      parent.find((e) => e.definition!.vhost === vhost && e.definition!.name === queue),
    );
    // The dead leader took definitions from discovery; recovery from the partitions and the parent.
    const strip = (m: CheckpointManifest) => m.queues.map((q) => ({ ...q, definition: undefined, journal: '' }));
    expect(strip(rebuilt)).toEqual(strip(manifest));
    expect(rebuilt.messages).toBe(manifest.messages);
    expect(names(rebuilt)).toEqual({ alpha: 'outside since 5', 'mid.dle': 'outside since 5', zeta: 'inside', billing: 'outside since 5' });
    // Without the parent's entry it refuses rather than drop a queue silently.
    expect(() => assembleManifest(plan.epoch, record.commit!, 3_000, [{ workerId: 'worker-b', queues: partial.queues }])).toThrow(/holds no entry for/);
  });

  it('aborts on any queue that cannot take part when strict, as before', () => {
    const plan = makePlan({ strict: true, prior: priorAll() });
    const partial = fullYes(plan, 'worker-b');
    partial.queues = partial.queues.slice(0, 1);
    partial.failed = [{ vhost: 'prod', queue: 'billing', reason: 'gap' }];
    const { record } = run(plan, { 'worker-a': vote('worker-a', fullYes(plan, 'worker-a')), 'worker-b': vote('worker-b', partial) });
    expect(record).toMatchObject({ decision: 'aborted', reason: 'worker worker-b could not prepare prod/billing: gap' });
  });
});
