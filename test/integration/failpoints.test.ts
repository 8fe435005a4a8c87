/**
 * The failpoint matrix: every protocol failpoint in every mode (crash, fail, stall), against a
 * real cluster (a coordinator, two workers, RabbitMQ, Redis, a file store). Each case publishes,
 * runs a round with the failpoint armed, heals (restarts what crashed, without failpoints),
 * publishes more and checkpoints again, then checks the invariants after recovery:
 *
 * - the faulted round has the outcome its step allows (a fault before the decision aborts it;
 *   one after COMMIT was recorded only delays it), and it never becomes visible if it aborted;
 * - no epoch is both aborted in the decision log and visible; every committed one is visible;
 * - every visible checkpoint covers every protected queue and restores to the exact journal
 *   prefix before its fence (G1-G3), holding every message confirmed before its round (G4);
 * - every worker learns the decision of every round it voted in (no undecided epoch left).
 *
 * The garbage collection failpoints (gc.after-manifest-deletes, gc.mid-sweep) have their own
 * cases: a prune cut short there leaves every visible checkpoint verifying in full, and the next
 * prune sweeps what the first left (the segments of a queue no kept checkpoint holds).
 *
 * The restore failpoint (worker.mid-restore) has its own cases: the cut-short restore ends and
 * reports its failed queues, and resuming it gives the exact prefix (queue targets may hold at
 * most a confirm window of duplicates per interruption, stream targets none).
 *
 * The matrix runs strict rounds (TIDEMARK_STRICT_ROUNDS=true: a fault before the decision aborts
 * the whole round). G8 has its own cases, with the default rounds: one queue's part failing
 * (worker.queue-part) or one worker failing after its segments (worker.after-segments) leaves the
 * others committing, carries the failed queues from their last good cut, and they come back.
 */
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkerClient } from '../../services/core/grpc/worker-client.js';
import { assign } from '../../services/core/state/rendezvous.js';
import { queueKey } from '../../services/core/format/queue-key.js';
import { DecisionLog } from '../../services/core/state/decision-log.js';
import type { FailpointMode, FailpointName } from '../../services/core/infrastructure/failpoints.js';
import { RoundOutcome, type CheckpointReply, type StatusReply } from '../../services/gen/tidemark/v1/admin.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { RoundRobinProducer } from '../helpers/producers.js';
import { RestoredQueues, restoreWithPrefix } from '../helpers/verify.js';
import { declareBoundQueues } from '../helpers/broker.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';
import { LocalStore } from '../../services/core/store/local-store.js';
import { segmentPrefix } from '../../services/core/store/keys.js';
import { eventually } from '../helpers/eventually.js';

const WORKERS = ['worker-1', 'worker-2'];
const TYPES = ['classic', 'quorum', 'stream'] as const;
const PREPARE_TIMEOUT_MS = 2_000;
/** Longer than the round's deadline (prepare timeout + 1s), so a stall always outlives it. */
const STALL = '5s';
/** Confirm window of the restores: the bound on duplicates a resumed queue target may hold. */
const WINDOW = 16;

/** What the faulted round must end as: aborted (never visible) or committed (visible, maybe late). */
type Expect = 'aborted' | 'committed';

interface Case {
  point: FailpointName;
  mode: FailpointMode;
  /** Suffix such as '@2' (fire on the second hit). */
  hit?: string;
  expect: Expect;
}

const target = (point: FailpointName) => (point.startsWith('coordinator.') ? 'coordinator' : 'worker-1');

// Before the decision is recorded any fault aborts the round; after it, a fault only delays it.
const CASES: Case[] = [
  ...(['crash', 'fail', 'stall'] as const).map((mode): Case => ({ point: 'coordinator.before-fence', mode, expect: 'aborted' })),
  ...(['crash', 'fail', 'stall'] as const).map((mode): Case => ({ point: 'coordinator.after-fence', mode, expect: 'aborted' })),
  ...(['crash', 'fail', 'stall'] as const).map((mode): Case => ({ point: 'coordinator.after-vote', mode, expect: 'aborted' })),
  { point: 'coordinator.after-vote', mode: 'crash', hit: '@2', expect: 'aborted' },
  ...(['crash', 'fail', 'stall'] as const).map((mode): Case => ({ point: 'coordinator.after-decision', mode, expect: 'committed' })),
  ...(['crash', 'fail', 'stall'] as const).map((mode): Case => ({ point: 'coordinator.after-manifest', mode, expect: 'committed' })),
  ...(['crash', 'fail', 'stall'] as const).map((mode): Case => ({ point: 'worker.after-segments', mode, expect: 'aborted' })),
  // A crash after the vote is returned leaves the YES standing; a lost or late vote aborts.
  { point: 'worker.after-vote', mode: 'crash', expect: 'committed' },
  { point: 'worker.after-vote', mode: 'fail', expect: 'aborted' },
  { point: 'worker.after-vote', mode: 'stall', expect: 'aborted' },
  ...(['crash', 'fail', 'stall'] as const).map((mode): Case => ({ point: 'worker.after-commit', mode, expect: 'committed' })),
];

let services: TestServices;
let redis: Redis;

/** Three queues (one of each type) named so that worker-1, the faulted worker, owns some. */
function queuesFor(vhost: string): Array<{ name: string; type: string }> {
  for (let n = 0; ; n += 1) {
    const queues = TYPES.map((type, i) => ({ name: `q${n}-${i}`, type }));
    const owners = assign(queues.map((q) => queueKey(vhost, q.name)), WORKERS);
    if (WORKERS.every((w) => (owners.get(w) ?? []).length > 0)) return queues;
  }
}

const until = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> => eventually(what, probe, { timeoutMs });

describe('failpoint matrix: every point in every mode, invariants after recovery', () => {
  beforeAll(async () => {
    services = await testServices();
    redis = new Redis(services.redisUrl);
  });

  afterAll(async () => {
    redis?.disconnect();
  });

  for (const c of CASES) {
    const spec = `${c.point}=${c.mode}${c.mode === 'stall' ? `:${STALL}` : ''}${c.hit ?? ''}`;
    it(`${spec} → ${c.expect}`, async () => {
      await withFaultedCluster({ [target(c.point)]: spec }, async ({ vhost, namespace, queues, cluster, ready }) => {

        // Round one, with the failpoint armed.
        const before = await publish(vhost, queues, 90);
        const faulted = await cluster.client.checkpoint(true).catch((err: Error) => err);
        const faultedEpoch = await newestStartedEpoch(namespace);
        expect(faultedEpoch, 'the faulted round took an epoch').toBeGreaterThan(0);

        // Heal: whatever crashed comes back without its failpoint (an armed one fired once).
        if (c.mode === 'crash') expect(await cluster.exited(target(c.point), 15_000), `${target(c.point)} crashed`).toBe('SIGKILL');
        for (const name of ['coordinator', ...WORKERS]) {
          if (!cluster.running(name)) cluster.restart(name, {});
        }
        await cluster.waitForStatus(ready, 'a leader with every queue assigned again');

        // Round two must commit, and hold everything confirmed before it.
        const after = await publish(vhost, queues, 90);
        const final = await until('a committed checkpoint after healing', async () => {
          const reply = await cluster!.client.checkpoint(true);
          return reply.outcome === RoundOutcome.ROUND_OUTCOME_COMMITTED ? reply : undefined;
        });

        // The faulted round's outcome, once recovery has had its say.
        const visible = async () => new Set((await cluster!.client.listCheckpoints()).map((s) => s.epoch));
        if (c.expect === 'committed') {
          await until(`checkpoint ${faultedEpoch} visible`, async () => ((await visible()).has(faultedEpoch) ? true : undefined));
          if (!(faulted instanceof Error) && faulted.epoch === faultedEpoch) expect(outcomeOf(faulted)).not.toBe('aborted');
        } else {
          expect((await visible()).has(faultedEpoch), `aborted round ${faultedEpoch} is not visible`).toBe(false);
          if (!(faulted instanceof Error)) expect(outcomeOf(faulted)).toBe('aborted');
        }

        // The decision log agrees with the store: aborted never visible, committed always visible.
        const shown = await visible();
        for (const record of await new DecisionLog(redis, namespace).all()) {
          if (record.state === 'aborted') expect(shown.has(record.epoch), `epoch ${record.epoch} aborted yet visible`).toBe(false);
          if (record.state === 'committed') expect(shown.has(record.epoch), `epoch ${record.epoch} committed yet not visible`).toBe(true);
          expect(record.state, `epoch ${record.epoch} left undecided`).not.toBe('started');
        }

        // Every visible checkpoint is complete and exact; the final one holds every message.
        const restored = new RestoredQueues(services.amqpUrl, vhost);
        for (const epoch of [...shown].sort((a, b) => a - b)) {
          const manifest = await cluster.client.getCheckpoint(String(epoch));
          expect(manifest.queues.map((q) => q.definition!.name).sort(), `checkpoint ${epoch} covers every queue`).toEqual(queues.map((q) => q.name).sort());
          const prefix = `r${epoch}-`;
          await restoreWithPrefix(cluster.client, manifest, prefix);
          await restored.expectExactPrefixes(manifest, prefix);
          const mustHold = epoch === final.epoch ? [before, after] : epoch === faultedEpoch ? [before] : [];
          for (const q of queues) {
            const ids = new Set((await restored.read(manifest, prefix, q.name)).map((m) => m.properties.messageId));
            for (const producer of mustHold) {
              const missing = producer.confirmed.get(q.name)!.filter((m) => !ids.has(m.messageId));
              expect(missing, `confirmed messages of ${q.name} missing from checkpoint ${epoch}`).toEqual([]);
            }
          }
        }

        // Every worker hears (or asks for) every decision.
        const status = await cluster.client.status();
        await until('every worker to know every decision', async () => {
          const reports = await Promise.all(status.workers.map((w) => withWorker(cluster, w.address, (client) => client.status(2_000))));
          return reports.every((r) => r.undecidedEpochs.length === 0) ? true : undefined;
        });
      });
    });
  }
});

describe('failpoints with default rounds (G8): what cannot take part is carried, the others commit, then it comes back', () => {
  beforeAll(async () => {
    services = await testServices();
    redis = new Redis(services.redisUrl);
  });

  afterAll(async () => {
    redis?.disconnect();
  });

  /** Queues worker-1 owns in `vhost`: its parts are hit in the first round, so @n+1 fires in the second. */
  const ownedByWorker1 = (vhost: string) => {
    const queues = queuesFor(vhost);
    return (assign(queues.map((q) => queueKey(vhost, q.name)), WORKERS).get('worker-1') ?? []).length;
  };

  const queuePart = (vhost: string) => `worker.queue-part=fail@${ownedByWorker1(vhost) + 1}`;
  const cases: Array<{ what: string; spec: (vhost: string) => string; outside: (owned: number) => number; coordinator?: string }> = [
    // The first part worker-1 prepares in round two fails: that queue alone is carried.
    { what: "one queue's part fails (worker.queue-part=fail)", spec: queuePart, outside: () => 1 },
    // Worker-1 votes NO in round two: every queue of its is carried.
    { what: 'a whole worker votes NO (worker.after-segments=fail@2)', spec: () => 'worker.after-segments=fail@2', outside: (owned) => owned },
    // The leader dies once round two's manifest landed, before any DECIDE: the next leader (the
    // same process, restarted) re-sends each worker what that manifest counted of its vote, or
    // the worker asks; either way the failed queue keeps its base.
    { what: "one queue's part fails, then the leader dies before DECIDE (coordinator.after-manifest=crash@2)", spec: queuePart, outside: () => 1, coordinator: 'coordinator.after-manifest=crash@2' },
  ];
  for (const c of cases) {
    it(`${c.what}: the round commits the others and carries it from its last good cut; the next round takes it back`, async () => {
      // The vhost name decides ownership, so the spec is made once the vhost is known: arm through a wrapper.
      let armedSpec = '';
      await withFaultedCluster(
        { 'worker-1': (vhost) => (armedSpec = c.spec(vhost)), ...(c.coordinator ? { coordinator: c.coordinator } : {}) },
        async ({ vhost, namespace, queues, cluster, ready }) => {
          const owned = ownedByWorker1(vhost);
          const before = await publish(vhost, queues, 60);
          const first = await cluster.client.checkpoint(true);
          expect(outcomeOf(first), `round one (${armedSpec} not fired yet)`).toBe('committed');

          // Round two: worker-1's failpoint fires; the round still commits. Its records are made
          // durable first (the flush timer), so a worker that wrongly adopted round two's cut for
          // a queue it was not counted in would drop segments no checkpoint holds: round three's
          // restore would miss them.
          const during = await publish(vhost, queues, 60);
          const worker1 = (await cluster.client.status()).workers.find((w) => w.workerId === 'worker-1')!;
          await until('worker-1 to flush what it read', async () => {
            const report = await withWorker(cluster, worker1.address, (client) => client.status(2_000));
            return report.queues.every((q) => q.buffered === 0) ? true : undefined;
          });
          let second: CheckpointReply;
          if (c.coordinator) {
            const cut = await cluster.client.checkpoint(true).catch((err: Error) => err);
            expect(await cluster.exited('coordinator', 15_000), 'the leader crashed after the manifest').toBe('SIGKILL');
            cluster.restart('coordinator', {});
            await cluster.waitForStatus(ready, 'a new leader with every queue assigned');
            const epoch = Math.max(...(await cluster.client.listCheckpoints()).map((s) => s.epoch));
            expect(cut instanceof Error || cut.epoch === epoch, 'round two is the newest checkpoint').toBe(true);
            second = { epoch, outcome: RoundOutcome.ROUND_OUTCOME_COMMITTED, reason: 'outside the cut (round reason not seen: its leader died)', durationMs: 0 };
          } else {
            second = await cluster.client.checkpoint(true);
          }
          expect(outcomeOf(second), second.reason).toBe('committed');
          expect(second.reason).toMatch(/outside the cut/);
          const manifest = await cluster.client.getCheckpoint(String(second.epoch));
          const outside = manifest.queues.filter((q) => q.outsideCut);
          expect(outside.length, 'queues outside the cut').toBe(c.outside(owned));
          for (const q of outside) {
            expect(q.outsideCut).toMatchObject({ sinceEpoch: first.epoch, reason: expect.stringContaining('failpoint') });
            expect(q.workerId).toBe('worker-1');
          }
          expect(manifest.queues.map((q) => q.definition!.name).sort(), 'every queue is in the checkpoint, inside or carried').toEqual(queues.map((q) => q.name).sort());
          // The status and the decision log say the same; every worker settles its round.
          expect((await cluster.client.status()).outsideCut.map((q) => q.queue).sort()).toEqual(outside.map((q) => q.definition!.name).sort());
          const record = (await new DecisionLog(redis, namespace).all()).find((r) => r.epoch === second.epoch)!;
          expect(record.commit?.outside?.map((o) => o.queue).sort()).toEqual(outside.map((q) => q.definition!.name).sort());

          // Round three: the queue takes part again, from its base in round one (its chain unbroken).
          const after = await publish(vhost, queues, 60);
          const third = await cluster.client.checkpoint(true);
          expect(outcomeOf(third), third.reason).toBe('committed');
          expect(third.reason).toBe('');

          // Every checkpoint restores exactly; a carried queue as of its last good cut.
          const restored = new RestoredQueues(services.amqpUrl, vhost);
          for (const [reply, mustHold] of [[first, [before]], [second, [before, during]], [third, [before, during, after]]] as const) {
            const m = await cluster.client.getCheckpoint(String(reply.epoch));
            const prefix = `r${reply.epoch}-`;
            await restoreWithPrefix(cluster.client, m, prefix);
            await restored.expectExactPrefixes(m, prefix);
            for (const q of m.queues) {
              const ids = new Set((await restored.read(m, prefix, q.definition!.name)).map((msg) => msg.properties.messageId));
              // A carried queue holds what its last good cut held, not what came after.
              for (const producer of q.outsideCut ? [before] : mustHold) {
                const missing = producer.confirmed.get(q.definition!.name)!.filter((msg) => !ids.has(msg.messageId));
                expect(missing, `confirmed messages of ${q.definition!.name} missing from checkpoint ${m.epoch}`).toEqual([]);
              }
              // (Producers number their messages from 0: the count tells them apart.)
              if (q.outsideCut) expect(ids.size, `carried ${q.definition!.name} holds nothing newer`).toBe(before.confirmed.get(q.definition!.name)!.length);
            }
          }
          const status = await cluster.client.status();
          expect(status.outsideCut).toEqual([]);
          await until('every worker to know every decision', async () => {
            const reports = await Promise.all(status.workers.map((w) => withWorker(cluster, w.address, (client) => client.status(2_000))));
            return reports.every((r) => r.undecidedEpochs.length === 0) ? true : undefined;
          });
        },
        false,
      );
    });
  }
});

describe('failpoint worker.mid-restore: a restore cut short resumes to the exact prefix (plus in-window duplicates in queue targets)', () => {
  beforeAll(async () => {
    services = await testServices();
  });

  for (const mode of ['crash', 'fail', 'stall'] as const) {
    const spec = `worker.mid-restore=${mode}${mode === 'stall' ? ':2s' : ''}`;
    it(spec, async () => {
      // Restore tasks go to workers by rendezvous hashing of the queues: arm both.
      await withFaultedCluster(Object.fromEntries(WORKERS.map((w) => [w, spec])), async ({ vhost, queues, cluster, ready }) => {
        await publish(vhost, queues, 300);
        const checkpoint = await cluster.client.checkpoint(true);
        expect(checkpoint.outcome).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
        const manifest = await cluster.client.getCheckpoint(String(checkpoint.epoch));

        // The faulted restore must end (not hang). A crashed worker's queue is retried on the
        // other worker, which is armed too; a failed queue is reported.
        let failed = -1;
        let restoreId = '';
        for await (const event of cluster.client.restore({ checkpoint: String(checkpoint.epoch), prefix: 'cut-', confirmWindow: WINDOW })) {
          if (event.event?.$case === 'plan') restoreId = event.event.value.restoreId;
          if (event.event?.$case === 'done') failed = event.event.value.failedQueues;
        }
        if (mode === 'stall') expect(failed, 'a stalled restore finishes').toBe(0);
        else expect(failed, "the faulted workers' queues are reported failed").toBeGreaterThan(0);

        // Heal: every worker comes back without failpoints (one that had no task is still armed).
        const before = new Map((await cluster.client.status()).workers.map((w) => [w.workerId, w.address]));
        if (mode === 'crash') {
          await new Promise((r) => setTimeout(r, 500));
          expect(WORKERS.filter((w) => !cluster!.running(w)).length, 'a worker running a restore task crashed').toBeGreaterThan(0);
        }
        for (const w of WORKERS) {
          await cluster.kill(w);
          cluster.restart(w, {});
        }
        const back = (s: StatusReply) => ready(s) && WORKERS.every((id) => s.workers.some((w) => w.workerId === id && w.address !== before.get(id)));
        await cluster.waitForStatus(back, 'the workers back without failpoints');

        // Resume: the failed queues continue from their recorded progress.
        let done: { failedQueues: number; messages: number } | undefined;
        for await (const event of cluster.client.resumeRestore(restoreId)) {
          if (event.event?.$case === 'done') done = event.event.value;
        }
        expect(done).toMatchObject({ failedQueues: 0, messages: manifest.messages });
        // A crash can stop a queue twice (its worker, then the other worker it moved to).
        const resumes = mode === 'crash' ? 2 : mode === 'fail' ? 1 : 0;
        await new RestoredQueues(services.amqpUrl, vhost).expectResumedPrefixes(manifest, 'cut-', WINDOW, resumes);
      });
    });
  }
});

describe('failpoints gc.after-manifest-deletes and gc.mid-sweep: a prune cut short leaves every visible checkpoint whole, and the next prune finishes', () => {
  beforeAll(async () => {
    services = await testServices();
  });

  for (const point of ['gc.after-manifest-deletes', 'gc.mid-sweep'] as const) {
    for (const mode of ['crash', 'fail', 'stall'] as const) {
      const spec = `${point}=${mode}${mode === 'stall' ? ':2s' : ''}`;
      it(spec, async () => {
        const vhost = uniqueName('tm-fpgc');
        const namespace = uniqueName('tmg');
        const queues = [{ name: 'q-kept', type: 'classic' }, { name: 'q-gone', type: 'classic' }];
        await createTestVhost(services.managementUrl, vhost);
        let cluster: TestCluster | undefined;
        try {
          await declareBoundQueues(services.amqpUrl, vhost, 'work', queues);
          cluster = await startTestCluster({
            services,
            namespace,
            protect: `${vhost}:q*`,
            store: { kind: 'file' },
            workers: 1,
            prepareTimeout: '1s',
            extraEnv: {
              TIDEMARK_LEASE_TIME: '1500ms',
              TIDEMARK_DISCOVERY_INTERVAL: '1s',
              TIDEMARK_RETAIN_LAST: '1',
              TIDEMARK_RETAIN_WITHIN: '0',
              TIDEMARK_RETAIN_DAILY: '0',
              TIDEMARK_RETAIN_WEEKLY: '0',
              TIDEMARK_RETAIN_MONTHLY: '0',
              TIDEMARK_GC_GRACE: '2s',
              TIDEMARK_FULL_EVERY: '2',
              TIDEMARK_PRUNE_INTERVAL: '0',
            },
            processEnv: { coordinator: { TIDEMARK_FAILPOINTS: spec } },
          });
          const c = cluster;
          const ready = (s: StatusReply) => s.leader && s.workers.length === 1;
          await c.waitForStatus((s) => ready(s) && s.protectedQueues === 2, 'a leader and both queues protected');
          const commit = async () => {
            const reply = await until('a committed checkpoint', async () => {
              const r = await c.client.checkpoint(true);
              return r.outcome === RoundOutcome.ROUND_OUTCOME_COMMITTED ? r : undefined;
            });
            return c.client.getCheckpoint(String(reply.epoch));
          };
          for (let i = 0; i < 3; i += 1) {
            await publish(vhost, queues, 20);
            await commit();
          }
          // q-gone goes with its journal: once no kept checkpoint holds it, its segments are swept.
          const journal = (await c.client.getCheckpoint('latest')).queues.find((q) => q.definition!.name === 'q-gone')!.journal;
          await deleteQueues(vhost, ['q-gone', journal]);
          await until('a checkpoint without q-gone', async () => ((await commit()).queues.some((q) => q.definition!.name === 'q-gone') ? undefined : true));
          // Past the grace period (2 s) and the time a worker may still apply a sent COMMIT (the
          // DECIDE deadline, 5 s): those checkpoints are protected until then.
          await new Promise((r) => setTimeout(r, 5_500));
          await commit();

          // The faulted prune.
          const faulted = await c.client.pruneCheckpoints(false).catch((err: Error) => err);
          if (mode === 'stall') expect(faulted).not.toBeInstanceOf(Error);
          else expect(faulted, 'the prune was cut short').toBeInstanceOf(Error);
          if (mode === 'crash') expect(await c.exited('coordinator', 15_000)).toBe('SIGKILL');
          else await c.kill('coordinator');
          c.restart('coordinator', {});
          await c.waitForStatus(ready, 'the coordinator back without failpoints, leading');
          await expectVisibleWhole(c);

          // The next prune finishes the work: q-gone's segments are gone, the rest is whole.
          await new Promise((r) => setTimeout(r, 5_500));
          await commit();
          const report = await c.client.pruneCheckpoints(false);
          expect(report.sweepSkipped).toBe('');
          const store = new LocalStore(fileURLToPath(c.storeUrl));
          expect(await store.list(segmentPrefix(vhost, 'q-gone'))).toEqual([]);
          await expectVisibleWhole(c);
          const latest = await c.client.getCheckpoint('latest');
          await restoreWithPrefix(c.client, latest, 'gc-');
          await new RestoredQueues(services.amqpUrl, vhost).expectExactPrefixes(latest, 'gc-');
        } finally {
          await cluster?.stop();
          await deleteTestVhost(services.managementUrl, vhost);
        }
      }, 180_000);
    }
  }
});

/** `tidemark verify --full` passes on every visible checkpoint. */
async function expectVisibleWhole(cluster: TestCluster): Promise<void> {
  for (const summary of await cluster.client.listCheckpoints()) {
    let problems = -1;
    const messages: string[] = [];
    for await (const event of cluster.client.verify(String(summary.epoch), true)) {
      if (event.event?.$case === 'problem') messages.push(event.event.value.message);
      if (event.event?.$case === 'done') problems = event.event.value.problems;
    }
    expect(problems, `checkpoint ${summary.epoch}: ${messages.join('; ')}`).toBe(0);
  }
}

async function deleteQueues(vhost: string, names: string[]): Promise<void> {
  const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
  const channel = await connection.createChannel();
  for (const name of names) await channel.deleteQueue(name);
  await connection.close();
}

interface FaultedCluster {
  vhost: string;
  namespace: string;
  queues: Array<{ name: string; type: string }>;
  cluster: TestCluster;
  /** A leader, every queue assigned, both workers owning some. */
  ready: (s: StatusReply) => boolean;
}

/**
 * Runs `body` against a fresh vhost with three bound queues (one per type, named so both workers
 * own some) and a cluster of a coordinator and two workers, the named processes started with
 * their failpoints armed. Everything is stopped and deleted afterwards.
 */
async function withFaultedCluster(armed: Record<string, string | ((vhost: string) => string)>, body: (context: FaultedCluster) => Promise<void>, strict = true): Promise<void> {
  const vhost = uniqueName('tm-fp');
  const namespace = uniqueName('tmf');
  const queues = queuesFor(vhost);
  await createTestVhost(services.managementUrl, vhost);
  let cluster: TestCluster | undefined;
  try {
    await declareBoundQueues(services.amqpUrl, vhost, 'work', queues);
    cluster = await startTestCluster({
      services,
      namespace,
      protect: `${vhost}:q*`,
      store: { kind: 'file' },
      workers: WORKERS.length,
      prepareTimeout: `${PREPARE_TIMEOUT_MS}ms`,
      extraEnv: { TIDEMARK_LEASE_TIME: '1500ms', TIDEMARK_DISCOVERY_INTERVAL: '1s', TIDEMARK_STRICT_ROUNDS: String(strict) },
      processEnv: Object.fromEntries(Object.entries(armed).map(([name, spec]) => [name, { TIDEMARK_FAILPOINTS: typeof spec === 'string' ? spec : spec(vhost) }])),
    });
    const ready = (s: StatusReply) =>
      s.leader && s.protectedQueues === queues.length && s.workers.length === WORKERS.length && s.workers.every((w) => w.queues > 0);
    await cluster.waitForStatus(ready, 'a leader, every queue assigned, both workers owning some');
    await body({ vhost, namespace, queues, cluster, ready });
  } finally {
    await cluster?.stop();
    await deleteTestVhost(services.managementUrl, vhost);
  }
}

async function publish(vhost: string, queues: Array<{ name: string }>, count: number): Promise<RoundRobinProducer> {
  const producer = new RoundRobinProducer(services.amqpUrl, vhost, 'work', queues.map((q) => q.name), { maxMessages: count, window: 16 });
  producer.start();
  await producer.finished();
  expect(producer.total()).toBe(count);
  return producer;
}

/** The newest epoch in the decision log: the round just run, whatever became of it. */
async function newestStartedEpoch(namespace: string): Promise<number> {
  const records = await new DecisionLog(redis, namespace).all();
  return records.length > 0 ? records[records.length - 1].epoch : 0;
}

function outcomeOf(reply: CheckpointReply): 'committed' | 'aborted' | 'pending' {
  if (reply.outcome === RoundOutcome.ROUND_OUTCOME_COMMITTED) return 'committed';
  if (reply.outcome === RoundOutcome.ROUND_OUTCOME_ABORTED) return 'aborted';
  return 'pending';
}

async function withWorker<T>(cluster: TestCluster, address: string, call: (client: WorkerClient) => Promise<T>): Promise<T> {
  const client = new WorkerClient(address, { tls: cluster.workerTls });
  try {
    return await call(client);
  } finally {
    client.close();
  }
}
