/**
 * One chaos run: a real cluster (two coordinators, three workers) on its own Redis and S3 server,
 * causal producers publishing all along, a schedule of faults each healed and followed by a
 * committed round, restores of checkpoints taken in between, and a final checkpoint restored
 * and checked against the whole history. Shared by `npm run chaos` (chaos.ts) and the short
 * variant in `npm test` (test/integration/chaos.test.ts).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import amqp from 'amqplib';
import { TidemarkClient, RoundOutcome, type CheckpointSummary } from '../../services/client/index.js';
import { ManagementClient } from '../../services/core/amqp/management-client.js';
import { amqpUrlForVhost } from '../../services/core/amqp/vhost-url.js';
import { assign } from '../../services/core/state/rendezvous.js';
import { journalName } from '../../services/core/format/names.js';
import { freePort, startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { ReconnectingCausalProducer } from './causal-producer.js';
import { injectFault } from './fault-injector.js';
import type { FaultKind } from './faults.js';
import { COUNTERS, History } from './history.js';
import { RedisServer, S3Server, S3RVER_KEY, ensureRabbitMQStarted } from './own-services.js';
import { FaultProxy } from './proxy.js';
import { readClusterLog, type ChaosReport, type FaultRecord } from './report.js';
import { deleteQueues, drainQueue, runRestore } from './restore-check.js';

export interface ChaosOptions {
  /** The broker (its default vhost) and its management API; the run makes its own vhosts. */
  amqpUrl: string;
  managementUrl: string;
  /** Faults, in the order they are injected. */
  schedule: FaultKind[];
  /** Picks the victims (which worker dies). */
  random: () => number;
  /** How long each fault lasts before it is healed. */
  holdMs: number;
  /** Publishing time after a fault's recovery before the next fault. */
  settleMs: number;
  /** A fault with no committed round this long after healing fails the run. @default 60000 */
  recoveryTimeoutMs?: number;
  /** Pause of each producer between pairs. @default 20 */
  producerPauseMs?: number;
  /** Progress lines. */
  log: (line: string) => void;
}

export { passed, summaryLine, type ChaosReport, type FaultRecord } from './report.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const EXCHANGE = 'events';
/** Two causal pairs over four source queues of different types. */
const PAIRS = [
  { name: 'p1', a: { name: 'a1', type: 'classic' }, b: { name: 'b1', type: 'quorum' } },
  { name: 'p2', a: { name: 'a2', type: 'stream' }, b: { name: 'b2', type: 'classic' } },
] as const;
const QUEUES = PAIRS.flatMap((p) => [p.a, p.b]);
const WORKERS = ['worker-1', 'worker-2', 'worker-3'];
const PROCESSES = ['coordinator', 'coordinator-2', ...WORKERS];
/** The worker whose coordinator link goes through the fault proxy. */
const LINKED_WORKER = 'worker-1';

/**
 * A run id whose vhost gives every worker at least one queue under the product's rendezvous
 * assignment, so that killing or cutting off any worker hits capture and rounds.
 */
function runId(): string {
  for (;;) {
    const id = randomBytes(4).toString('hex');
    const owners = assign(QUEUES.map((q) => `chaos-${id}\u0000${q.name}`), WORKERS);
    if ([...owners.values()].every((keys) => keys.length > 0)) return id;
  }
}

export class ChaosRun {
  readonly history = new History();
  private readonly id = runId();
  private readonly vhost = `chaos-${this.id}`;
  private readonly restoreVhost = `chaos-${this.id}-restored`;
  private readonly dir = mkdtempSync(join(tmpdir(), 'tidemark-chaos-'));
  private readonly management: ManagementClient;
  private redis: RedisServer | undefined;
  private s3: S3Server | undefined;
  private link: FaultProxy | undefined;
  private cluster: TestCluster | undefined;
  private readonly clients = new Map<string, TidemarkClient>();
  private readonly producers: ReconnectingCausalProducer[] = [];
  private readonly faults: FaultRecord[] = [];
  private readonly problems: string[] = [];
  private readonly notes: string[] = [];
  private cleaned: Promise<void> | undefined;

  constructor(private readonly options: ChaosOptions) {
    this.management = new ManagementClient(options.managementUrl);
  }

  private log(line: string): void {
    this.options.log(line);
  }

  /** Something odd that does not fail the run by itself (a restore that needed a retry). */
  private note(line: string): void {
    this.notes.push(line);
    this.log(`NOTE ${line}`);
  }

  /** Runs everything and cleans up after itself, also on failure. */
  async run(): Promise<ChaosReport> {
    try {
      await this.setUp();
      for (const kind of this.options.schedule) {
        await this.inject(kind);
        await sleep(this.options.settleMs);
      }
      return await this.finish();
    } finally {
      await this.cleanUp();
    }
  }

  private async setUp(): Promise<void> {
    this.redis = await RedisServer.start(await freePort(), join(this.dir, 'redis.log'));
    this.s3 = await S3Server.start();
    const workerPort = await freePort();
    this.link = await FaultProxy.start({ target: { host: '127.0.0.1', port: workerPort } });
    for (const vhost of [this.vhost, this.restoreVhost]) {
      await this.management.createVhost(vhost);
      await this.management.setPermissions(vhost, decodeURIComponent(new URL(this.options.managementUrl).username) || 'guest', { configure: '.*', write: '.*', read: '.*' });
    }
    await this.declareTopology();
    this.cluster = await startTestCluster({
      services: {
        amqpUrl: this.options.amqpUrl,
        managementUrl: this.options.managementUrl,
        redisUrl: this.redis.url,
        s3: { endpoint: this.s3.endpoint, accessKey: S3RVER_KEY, secretKey: S3RVER_KEY, region: 'us-east-1' },
      },
      namespace: `chaos-${this.id}`,
      protect: `${this.vhost}:*`,
      store: { kind: 's3', bucket: `chaos-${this.id}` },
      workers: 3,
      coordinators: 2,
      interval: '1s',
      prepareTimeout: '3s',
      extraEnv: { TIDEMARK_LEASE_TIME: '2s', TIDEMARK_DISCOVERY_INTERVAL: '1s' },
      processArgs: { [LINKED_WORKER]: ['--listen', `127.0.0.1:${workerPort}`, '--advertise', this.link.address] },
    });
    for (const [name, address] of Object.entries(this.cluster.coordinatorAddresses)) this.clients.set(name, new TidemarkClient(address, { deadlineMs: 5_000, tls: this.cluster.clientTls, token: this.cluster.token }));
    this.log(`vhost ${this.vhost}, cluster log ${this.cluster.logFile}, redis ${this.redis.url} (log in ${this.dir}), s3 ${this.s3.endpoint}, ${LINKED_WORKER} behind ${this.link.address}`);
    await this.until('a leader with all queues assigned', 60_000, async () => {
      const { client } = await this.leader();
      const status = await client.status();
      return (
        status.protectedQueues === QUEUES.length &&
        status.workers.length === WORKERS.length &&
        status.workers.every((w) => w.queues > 0) &&
        status.workers.reduce((n, w) => n + w.queues, 0) === QUEUES.length
      );
    });
    const started = Date.now();
    for (const pair of PAIRS) {
      const producer = new ReconnectingCausalProducer({
        amqpUrl: this.options.amqpUrl,
        vhost: this.vhost,
        exchange: EXCHANGE,
        queueA: pair.a.name,
        queueB: pair.b.name,
        name: pair.name,
        history: this.history,
        pauseMs: this.options.producerPauseMs,
      });
      producer.start();
      this.producers.push(producer);
    }
    const baseline = await this.commitAfter(started);
    if (!baseline) throw new Error(`no checkpoint committed within the recovery timeout after start-up; see ${this.cluster.logFile}`);
    this.log(`baseline checkpoint ${baseline.epoch} committed ${((baseline.committedAtMs - started) / 1000).toFixed(1)} s after publishing began`);
    await this.restoreAndRecord(baseline.epoch, 'baseline');
  }

  private async declareTopology(): Promise<void> {
    const connection = await amqp.connect(amqpUrlForVhost(this.options.amqpUrl, this.vhost));
    try {
      const channel = await connection.createChannel();
      await channel.assertExchange(EXCHANGE, 'direct', { durable: true });
      for (const q of QUEUES) {
        await channel.assertQueue(q.name, { durable: true, arguments: { 'x-queue-type': q.type } });
        await channel.bindQueue(q.name, EXCHANGE, q.name);
      }
    } finally {
      await connection.close();
    }
  }

  /** The leading coordinator and its client; waits for one to lead. */
  private async leader(timeoutMs = 30_000): Promise<{ name: string; client: TidemarkClient }> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (const [name, client] of this.clients) {
        if (!this.cluster!.running(name)) continue;
        const status = await client.status().catch(() => undefined);
        if (status?.leader) return { name, client };
      }
      await sleep(250);
    }
    throw new Error(`no coordinator led within ${timeoutMs} ms`);
  }

  private async until(what: string, timeoutMs: number, probe: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (await probe().catch(() => false)) return;
      await sleep(250);
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; see ${this.cluster?.logFile}`);
  }

  /** Visible checkpoints, from whichever coordinator answers. */
  private async checkpoints(): Promise<CheckpointSummary[] | undefined> {
    for (const [name, client] of this.clients) {
      if (!this.cluster!.running(name)) continue;
      const list = await client.listCheckpoints().catch(() => undefined);
      if (list) return list;
    }
    return undefined;
  }

  /** The first checkpoint whose round began at or after `t`, once it is visible; undefined on timeout. */
  private async commitAfter(t: number): Promise<CheckpointSummary | undefined> {
    const deadline = Date.now() + (this.options.recoveryTimeoutMs ?? 60_000);
    while (Date.now() < deadline) {
      const found = (await this.checkpoints())?.find((c) => c.startedAtMs >= t);
      if (found) return found;
      await sleep(250);
    }
    return undefined;
  }

  /**
   * One fault: inject, hold, heal, then wait for a round begun after the heal to commit. The
   * first checkpoint after it is restored and checked, and so is one whose round overlapped the
   * fault, if any (e.g. a round the new leader finished, or one committed during the hold).
   */
  private async inject(kind: FaultKind): Promise<void> {
    const cluster = this.cluster!;
    const before = new Set((await this.checkpoints())?.map((c) => c.epoch) ?? []);
    const startedAtMs = Date.now();
    const { target, healedAtMs } = await injectFault(kind, this.options.holdMs, {
      cluster,
      redis: this.redis!,
      s3: this.s3!,
      link: this.link!,
      linkedWorker: LINKED_WORKER,
      workers: WORKERS,
      amqpUrl: this.options.amqpUrl,
      managementUrl: this.options.managementUrl,
      ownVhosts: [this.vhost, this.restoreVhost],
      // Each process's broker health check connects to the AMQP URL's vhost (core/amqp/broker-check.ts).
      ownConnectionNames: PROCESSES.map((name) => `tidemark ${name.startsWith('worker') ? 'worker' : 'coordinator'} ${name} health`),
      vhost: this.vhost,
      journals: QUEUES.map((q) => journalName(`chaos-${this.id}`, this.vhost, q.name)),
      log: (line) => this.log(line),
      leader: async () => (await this.leader()).name,
      random: this.options.random,
    });
    const record: FaultRecord = { kind, target, startedAtMs, healedAtMs };
    this.faults.push(record);
    await this.reviveCrashed(kind);
    const commit = await this.commitAfter(healedAtMs);
    if (!commit) {
      this.problems.push(`${kind} (${target}): no round begun after the heal committed within ${(this.options.recoveryTimeoutMs ?? 60_000) / 1000} s`);
      this.log(`FAULT ${kind} on ${target}: NO committed round after healing; see ${cluster.logFile}`);
      return;
    }
    record.recoverS = (commit.committedAtMs - healedAtMs) / 1000;
    record.epoch = commit.epoch;
    this.log(`fault ${kind} on ${target}: held ${((healedAtMs - startedAtMs) / 1000).toFixed(1)} s, checkpoint ${commit.epoch} committed ${record.recoverS.toFixed(1)} s after healing`);
    await this.reviveCrashed(kind);
    const during = (await this.checkpoints())?.find((c) => !before.has(c.epoch) && c.startedAtMs < healedAtMs);
    if (during) await this.restoreAndRecord(during.epoch, `during ${kind}`);
    await this.restoreAndRecord(commit.epoch, `after ${kind}`);
  }

  /** A process that died without being killed is a finding; it is started again so the run goes on. */
  private async reviveCrashed(during: FaultKind): Promise<void> {
    for (const name of PROCESSES) {
      if (this.cluster!.running(name)) continue;
      const code = await this.cluster!.exited(name, 1_000).catch(() => 'unknown');
      this.problems.push(`${name} exited on its own (${code}) around fault ${during}`);
      this.log(`PROCESS ${name} exited on its own (${code}) around fault ${during}; starting it again`);
      this.cluster!.restart(name);
    }
  }

  /** Restores checkpoint `epoch` into the restore vhost, reads it back into the history. */
  private async restoreAndRecord(epoch: number, label: string): Promise<void> {
    const manifest = await this.anyClient((c) => c.getCheckpoint(String(epoch)));
    let prefix = '';
    for (let attempt = 0; attempt < 3 && prefix === ''; attempt += 1) {
      // A retry goes into fresh targets: a partial restore's queues refuse a second one.
      const candidate = `e${epoch}${attempt > 0 ? `-${attempt}` : ''}.`;
      try {
        const { client } = await this.leader();
        const outcome = await runRestore(client, { checkpoint: String(epoch), prefix: candidate, targetVhost: this.restoreVhost });
        if (outcome.failedQueues === 0 && outcome.messages === manifest.messages) prefix = candidate;
        else this.note(`restore of ${epoch} attempt ${attempt + 1}: ${outcome.failedQueues} failed queue(s), ${outcome.messages}/${manifest.messages} messages: ${outcome.errors.join('; ')}`);
      } catch (err) {
        this.note(`restore of ${epoch} attempt ${attempt + 1} failed: ${(err as Error).message}`);
        await sleep(1_000);
      }
    }
    if (prefix === '') {
      this.problems.push(`checkpoint ${epoch} (${label}) could not be restored in 3 attempts`);
      return;
    }
    const queues = new Map<string, Array<string | undefined>>();
    for (const entry of manifest.queues) {
      const name = entry.definition!.name;
      queues.set(name, await drainQueue(this.options.amqpUrl, this.restoreVhost, `${prefix}${name}`, entry.definition!.type, entry.messages));
    }
    await deleteQueues(this.options.amqpUrl, this.restoreVhost, manifest.queues.map((e) => `${prefix}${e.definition!.name}`));
    const incomplete = new Set(manifest.queues.filter((e) => e.incomplete.length > 0).map((e) => e.definition!.name));
    if (incomplete.size > 0) this.log(`checkpoint ${epoch} marks ${[...incomplete].join(', ')} as possibly incomplete: ${manifest.queues.find((e) => e.incomplete.length > 0)!.incomplete.at(-1)!.reason}`);
    // A queue carried from an older cut (G8) must hold what was confirmed before that cut's round.
    const outside = new Map<string, number>();
    for (const e of manifest.queues.filter((q) => q.outsideCut)) {
      const since = await this.anyClient((c) => c.getCheckpoint(String(e.outsideCut!.sinceEpoch)));
      outside.set(e.definition!.name, since.startedAtMs);
      this.log(`checkpoint ${epoch} carries ${e.definition!.name} from checkpoint ${e.outsideCut!.sinceEpoch}: ${e.outsideCut!.reason}`);
    }
    this.history.restored({ epoch, label, mustHoldConfirmedBeforeMs: manifest.startedAtMs, queues, incomplete, outside });
    const verdict = this.history.check().checkpoints.at(-1)!;
    const counts = COUNTERS.map((c) => `${c}=${verdict[c]}`).join(' ');
    this.log(`checked checkpoint ${epoch} (${label}, led by ${manifest.coordinatorId}): ${verdict.restored} messages, ${counts}${verdict.examples.length > 0 ? `; ${verdict.examples.join('; ')}` : ''}`);
  }

  /**
   * Reads every journal straight from the broker, so that a loss can be told apart: a message the
   * journal lacks was never written by the broker; one it holds and a checkpoint lacks is Tidemark's.
   */
  private async readJournals(journals: Array<{ queue: string; journal: string }>): Promise<void> {
    const ids = new Map<string, Set<string>>();
    for (const { queue, journal } of journals) {
      const read = await drainQueue(this.options.amqpUrl, this.vhost, journal, 'stream', 0, { idleMs: 2_000, timeoutMs: 120_000, dataOnly: true });
      ids.set(queue, new Set(read.filter((id): id is string => id !== undefined)));
    }
    this.history.journals(ids);
    const missing = this.history.check().journalMissing ?? 0;
    this.log(`journals read: ${[...ids].map(([q, s]) => `${q} ${s.size}`).join(', ')}; ${missing} confirmed message(s) missing from them`);
  }

  private async anyClient<T>(call: (client: TidemarkClient) => Promise<T>): Promise<T> {
    let last: unknown;
    for (let attempt = 0; attempt < 20; attempt += 1) {
      for (const [name, client] of this.clients) {
        if (!this.cluster!.running(name)) continue;
        try {
          return await call(client);
        } catch (err) {
          last = err;
        }
      }
      await sleep(500);
    }
    throw last;
  }

  /** Stops publishing, takes a final checkpoint, restores the latest and checks the history. */
  private async finish(): Promise<ChaosReport> {
    const stoppedAt = Date.now();
    await Promise.all(this.producers.map((p) => p.stop()));
    for (const [i, p] of this.producers.entries()) {
      this.log(`producer ${PAIRS[i].name}: ${p.stats.pairs} pairs, ${p.stats.confirmed} confirmed, ${p.stats.unknown} unknown, ${p.stats.reconnects} reconnects`);
    }
    const { client } = await this.leader();
    const reply = await client.checkpoint(true).catch((err: Error) => ({ outcome: RoundOutcome.ROUND_OUTCOME_UNSPECIFIED, reason: err.message, epoch: 0 }));
    if (reply.outcome !== RoundOutcome.ROUND_OUTCOME_COMMITTED) {
      this.note(`final checkpoint ${reply.epoch} did not commit (${reply.reason}); waiting for a scheduled one`);
      if (!(await this.commitAfter(stoppedAt))) this.problems.push('no checkpoint committed after publishing stopped');
    }
    const latest = await this.anyClient((c) => c.getCheckpoint('latest'));
    if (latest.startedAtMs < stoppedAt) {
      this.problems.push(`the latest checkpoint ${latest.epoch} began before publishing stopped`);
    } else {
      await this.restoreAndRecord(latest.epoch, 'final');
    }
    await this.readJournals(latest.queues.map((e) => ({ queue: e.definition!.name, journal: e.journal })));
    const verdict = this.history.check();
    const committed = (await this.checkpoints())?.length ?? 0;
    return {
      verdict,
      committed,
      ...readClusterLog(this.cluster!.logFile),
      recoverS: Math.max(0, ...this.faults.map((f) => f.recoverS ?? 0)),
      faults: this.faults,
      problems: this.problems,
      notes: this.notes,
      logFile: this.cluster!.logFile,
    };
  }

  /** Stops everything the run started and deletes its vhosts; safe to call twice. */
  cleanUp(): Promise<void> {
    this.cleaned ??= (async () => {
      const step = async (what: string, work: () => Promise<unknown> | undefined) => {
        try {
          await work();
        } catch (err) {
          this.log(`clean-up: ${what} failed: ${(err as Error).message}`);
        }
      };
      // An interrupted broker restart must not leave the shared broker stopped.
      await step('starting RabbitMQ again', async () => {
        if (await ensureRabbitMQStarted(this.options.amqpUrl, this.options.managementUrl)) this.log('started the RabbitMQ application again');
      });
      await step('stopping producers', () => Promise.all(this.producers.map((p) => p.stop())));
      for (const client of this.clients.values()) client.close();
      await step('stopping the cluster', () => this.cluster?.stop());
      for (const vhost of [this.vhost, this.restoreVhost]) await step(`deleting vhost ${vhost}`, () => this.management.deleteVhost(vhost));
      await step('closing the link proxy', () => this.link?.close());
      await step('stopping s3rver', () => this.s3?.stop());
      await step('stopping redis-server', () => this.redis?.stop());
    })();
    return this.cleaned;
  }
}
