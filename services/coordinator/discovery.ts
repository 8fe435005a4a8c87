/**
 * Discovery and journal provisioning. Each pass lists the broker's vhosts, queues, bindings and
 * exchanges through the management API, picks the protected queues, and makes sure each has its
 * journal stream bound exactly like the source (plus the vhost's fence exchange).
 *
 * Invariant: a queue joins the protected set only after its journal is bound to the fence
 * exchange, so every fence published afterwards lands in its journal.
 *
 * In a firehose vhost (services/core/firehose.ts) journals are bound only to the relay exchange,
 * and the firehose queue to the trace of every exchange that reaches a protected queue.
 *
 * A protected queue that disappears from the broker stays protected as "deleted": its journal
 * loses the source bindings (so it stops receiving what the queue no longer gets) but keeps the
 * fence binding, and checkpoints keep carrying its data forward.
 *
 * New journals are declared only as far as the broker resource guard (resource-guard.ts) finds
 * room; a selected queue beyond that waits without a journal and is reported, never forced.
 * Each pass also reports the entry paths into protected queues that no journal can see (dead-
 * lettering, queue federation; entry-paths.ts), for coverage.
 *
 * Journal retention (journal-retention.ts): each pass sets the bound every journal keeps, as the
 * vhost's journal policy, and under disk pressure stops protecting the largest journal.
 *
 * A journal whose queue's checkpoints were taken from an earlier journal of the same name is
 * *renewed*: the earlier one was deleted (shed under disk pressure, or by someone else) and the
 * checkpoints' offsets do not match the new one. Every journal records when it was declared
 * (`x-tidemark-created-at`), so this is known from the broker and the latest checkpoint alone,
 * on any leader. A renewed queue's capture starts afresh from its new journal, and its next
 * checkpoint marks it possibly incomplete (what entered it in between is in no checkpoint).
 */
import type { Channel } from 'amqplib';
import type { ExchangeDefinition, QueueDefinition } from '../gen/tidemark/v1/store.js';
import {
  errorMessage,
  fenceExchangeName,
  firehoseQueueName,
  isOwnObject,
  journalName,
  type Logger,
  MAX_FILE_NAME_BYTES,
  NotFoundError,
  ProtectionPolicy,
  relayExchangeName,
  relayFenceKey,
  streamDirectoryLength,
  toFieldTable,
  TRACE_EXCHANGE,
  traceKeyOf,
} from '../core/index.js';
import { type BindingInfo, ManagementClient, queueBindings, type VhostConnections } from '../core/amqp/index.js';
import { sentinelName } from './broker-continuity.js';
import { queueKey } from './checkpoint-round.js';
import type { JournalAdmission, ResourceGuard, WaitingQueue } from './resource-guard.js';
import type { JournalRetention } from './journal-retention.js';
import type { ShedJournal, ShedJournals } from './shed-journals.js';
import { segmentBytesFor } from './journal-retention.js';
import { uncapturablePaths } from './entry-paths.js';

export interface ProtectedQueue {
  definition: QueueDefinition;
  journal: string;
  /** The source queue no longer exists; its journal is kept and its data carried forward. */
  deleted: boolean;
}

export interface DiscoveryResult {
  queues: Map<string, ProtectedQueue>;
  exchanges: ExchangeDefinition[];
  vhosts: string[];
  /** Problems met in this pass (a vhost that could not be read, a journal that could not be bound). */
  problems: string[];
  /** Selected queues the resource guard gave no journal in this pass, in listing order. */
  waiting: WaitingQueue[];
  /**
   * Renewed queues by queueKey (see above), with what happened: their capture must not resume
   * from their latest checkpoint, and their next checkpoint marks them.
   */
  renewed: Map<string, string>;
  /**
   * Entry paths into protected queues their journals cannot see, by queueKey (only queues that
   * have one). A vhost that could not be read this pass keeps what its last pass found.
   */
  uncapturable: Map<string, string[]>;
}

export interface DiscoveryOptions {
  namespace: string;
  /** x-max-age of new journal streams. */
  journalMaxAge: string;
  /** x-max-length-bytes of new journal streams; 0 or absent for none. */
  journalMaxBytes?: number;
  management: ManagementClient;
  connections: VhostConnections;
  policy: ProtectionPolicy;
  /** Vhosts captured through the firehose tracer (TIDEMARK_FIREHOSE_VHOSTS). */
  firehoseVhosts?: ReadonlySet<string>;
  /** Admits new journals only while the broker has room; without one every journal is declared. */
  guard?: ResourceGuard;
  /** Bounds what journals keep from the broker's disk (needs the guard's node figures). */
  retention?: JournalRetention;
  /** Where shed journals are recorded for later leaders; without it only this one knows. */
  shedLog?: ShedJournals;
  log: Logger;
}

export class Discovery {
  /** Queues protected so far; survives passes so deleted sources are remembered. */
  private readonly known = new Map<string, ProtectedQueue>();
  /** Uncapturable entry paths of protected queues, by queueKey, as of each vhost's last good pass. */
  private readonly uncapturable = new Map<string, string[]>();
  /**
   * When the round of the latest checkpoint holding each queue started, by queueKey: its cut was
   * taken in the journal that existed then.
   */
  private readonly checkpointedAt = new Map<string, number>();
  /** When each journal was declared (x-tidemark-created-at), by queueKey; absent if unknown. */
  private readonly journalCreatedAt = new Map<string, number>();
  /** Queues whose journal was shed, by queueKey, until they are checkpointed from a new one. */
  private readonly shed = new Map<string, ShedJournal>();
  private shedLoaded = false;

  /** A checkpoint holding `queues` (by queueKey), whose round started at `startedAtMs`, committed. */
  committed(queues: ReadonlySet<string>, startedAtMs: number): void {
    for (const id of [...this.checkpointedAt.keys()]) if (!queues.has(id)) this.checkpointedAt.delete(id);
    for (const id of queues) {
      this.checkpointedAt.set(id, startedAtMs);
      // Shed, renewed, and checkpointed from its new journal since.
      if (this.shed.has(id) && (this.journalCreatedAt.get(id) ?? Infinity) <= startedAtMs) {
        this.shed.delete(id);
        this.options.shedLog?.remove(id).catch((err) => this.options.log.warn(`forgetting the shed journal of ${id}: ${errorMessage(err)}`));
      }
    }
  }

  constructor(private readonly options: DiscoveryOptions) {}

  /**
   * Seeds the protected set from the latest manifest, so a queue deleted while no leader ran is
   * still carried (and its journal released) by the next pass.
   */
  remember(queues: ProtectedQueue[], startedAtMs: number): void {
    this.committed(new Set(queues.map((q) => queueKey(q.definition.vhost, q.definition.name))), startedAtMs);
    for (const q of queues) {
      const id = queueKey(q.definition.vhost, q.definition.name);
      if (!this.known.has(id)) this.known.set(id, { ...q, deleted: false });
    }
  }

  private brokerChecked = false;

  /** Warns once about broker versions with stream bugs that affect capture. */
  private async checkBroker(): Promise<void> {
    if (this.brokerChecked) return;
    this.brokerChecked = true;
    const { rabbitmqVersion } = await this.options.management.overview();
    if (/^3\.(8|9|10)\./.test(rabbitmqVersion)) {
      this.options.log.warn(
        `RabbitMQ ${rabbitmqVersion}: its streams drop nested tables and arrays from headers (e.g. x-death), and a message ` +
          'with a decimal header routed to a stream closes its publisher\'s connection. Journals inherit both; see docs/OPERATIONS.md',
      );
    }
  }

  async pass(): Promise<DiscoveryResult> {
    const { management, policy } = this.options;
    const problems: string[] = [];
    await this.checkBroker().catch(() => {
      this.brokerChecked = false;
    });
    const covered = (await management.listVhosts()).filter((vhost) => policy.coversVhost(vhost));
    // Vhosts that hold protected queues are visited even if the policy no longer covers them,
    // so their journals can be released.
    const vhosts = [...new Set([...covered, ...[...this.known.values()].map((k) => k.definition.vhost)])].sort();
    const exchanges: ExchangeDefinition[] = [];
    const waiting: WaitingQueue[] = [];
    await this.loadShed();
    const admission = await this.options.guard?.open(this.known.size);
    const retention = this.options.retention;
    if (retention && retention.boundBytes === undefined) await this.adoptBound(vhosts);
    const decision = retention && this.options.guard ? retention.decide(this.options.guard.nodes, this.known.size) : undefined;
    for (const vhost of vhosts) {
      try {
        exchanges.push(...(await this.passVhost(vhost, admission, waiting, problems)));
      } catch (err) {
        if (err instanceof NotFoundError) {
          this.forgetVhost(vhost);
          continue;
        }
        problems.push(`vhost ${vhost}: ${errorMessage(err)}`);
        this.options.log.warn(`discovery of vhost ${vhost} failed: ${errorMessage(err)}`);
      }
    }
    if (decision && decision.shed > 0) await this.shedLargest(decision.pressure).catch((err) => problems.push(`shedding a journal: ${errorMessage(err)}`));
    this.options.guard?.report(waiting, admission);
    // Queues of vhosts that failed this pass stay in the set as they were: a failed listing
    // must not look like a deletion.
    for (const id of this.uncapturable.keys()) if (!this.known.has(id)) this.uncapturable.delete(id);
    return {
      queues: new Map(this.known),
      exchanges,
      vhosts: [...new Set([...this.known.values()].map((q) => q.definition.vhost))],
      problems,
      waiting,
      renewed: this.renewed(),
      uncapturable: new Map(this.uncapturable),
    };
  }

  /**
   * Provisions one vhost's journals; returns the exchanges its protected queues are bound to. A
   * selected queue without a journal gets one only if `admission` has room, else joins `waiting`;
   * a queue that cannot get a journal at all is left out and added to `problems`; the others go on.
   */
  private async passVhost(vhost: string, admission: JournalAdmission | undefined, waiting: WaitingQueue[], problems: string[]): Promise<ExchangeDefinition[]> {
    const { management, policy, namespace, log } = this.options;
    const [queues, bindings, vhostExchanges, policies] = await Promise.all([
      management.listQueues(vhost),
      management.listBindings(vhost),
      management.listExchanges(vhost),
      management.listPolicies(vhost),
    ]);
    const chosen = queues.filter((q) => !q.exclusive && !isOwnObject(namespace, q.name) && policy.matches(vhost, q.name));
    const known = [...this.known.entries()].filter(([, k]) => k.definition.vhost === vhost);
    const existing = new Set(queues.map((q) => q.name));
    const streams = new Set(queues.filter((q) => q.type === 'stream').map((q) => q.name));
    const firehoseQueue = firehoseQueueName(namespace);
    const firehose = this.options.firehoseVhosts?.has(vhost) ?? false;
    for (const [id] of known) this.uncapturable.delete(id);
    const paths = uncapturablePaths(
      chosen.map((q) => q.name),
      { queues, bindings, exchanges: vhostExchanges, policies },
    );
    for (const [name, reasons] of paths) this.uncapturable.set(queueKey(vhost, name), reasons);
    if (chosen.length === 0 && known.length === 0 && !existing.has(firehoseQueue)) return [];
    const channel = await this.channel(vhost);
    const usedExchanges = new Set<string>();
    try {
      await channel.assertExchange(fenceExchangeName(namespace), 'fanout', { durable: true });
      await this.applyRetention(vhost, policies, queues);
      // A journal never predates its vhost's restart sentinel (broker-continuity.ts). Once journals
      // exist, a missing sentinel is a restart to mark, and only a committed round declares it again.
      const sentinel = sentinelName(namespace);
      if (!existing.has(sentinel) && !queues.some((q) => q.name.startsWith(`${namespace}.journal.`))) {
        await channel.assertQueue(sentinel, { durable: false, autoDelete: false, exclusive: false });
      }
      // Firehose capture must see a new queue's publishes before the queue joins the set.
      let route: JournalRoute = 'bindings';
      if (firehose) {
        await this.provisionFirehose(channel, vhost, chosen.map((q) => q.name), bindings, existing);
        route = 'firehose';
      } else if (existing.has(firehoseQueue)) {
        route = (await this.drainFirehose(channel, vhost, bindings)) ? 'bindings' : 'draining';
      }
      const seen = new Set<string>();
      for (const q of chosen) {
        const id = queueKey(vhost, q.name);
        let journal: string;
        try {
          journal = journalName(namespace, vhost, q.name);
        } catch (err) {
          problems.push(`queue ${vhost}/${q.name}: ${errorMessage(err)}`);
          log.warn(`queue ${vhost}/${q.name} is not protected: ${errorMessage(err)}`);
          continue;
        }
        await this.deleteUnstartable(channel, vhost, q.name, journal, streams, existing);
        // A queue with a journal (protected, or by an earlier leader) costs nothing new.
        if (admission && !this.known.has(id) && !existing.has(journal) && !admission.admit()) {
          const shed = this.shed.get(id);
          waiting.push({ vhost, queue: q.name, reason: shed ? `${shed.reason}; ${admission.reason}` : admission.reason });
          continue;
        }
        if (this.known.has(id) && !existing.has(journal)) {
          log.error(
            `the journal ${journal} of protected queue ${vhost}/${q.name} is gone (deleted outside Tidemark?): declaring it again; ` +
              'what entered the queue meanwhile is in no checkpoint, and its next checkpoint marks it possibly incomplete',
          );
        }
        const created = queues.find((j) => j.name === journal)?.arguments?.[CREATED_AT_ARGUMENT];
        if (existing.has(journal)) {
          if (typeof created === 'number') this.journalCreatedAt.set(id, created);
          else this.journalCreatedAt.delete(id);
        }
        const explicit = queueBindings(bindings, q.name);
        const definition: QueueDefinition = {
          vhost,
          name: q.name,
          type: q.type || 'classic',
          durable: q.durable,
          autoDelete: q.autoDelete,
          arguments: toFieldTable(q.arguments ?? {}),
          bindings: explicit.map((b) => ({ source: b.source, routingKey: b.routingKey, arguments: toFieldTable(b.arguments ?? {}) })),
        };
        const declaredAt = await this.provision(channel, journal, explicit, bindings, existing, route);
        if (declaredAt !== undefined) this.journalCreatedAt.set(id, declaredAt);
        explicit.forEach((b) => usedExchanges.add(b.source));
        this.known.set(id, { definition, journal, deleted: false });
        seen.add(id);
      }
      for (const [id, entry] of known) {
        if (seen.has(id)) continue;
        if (!policy.matches(vhost, entry.definition.name)) {
          // No longer selected: stop capturing it; its journal and earlier checkpoints stay.
          if (existing.has(entry.journal)) await this.provision(channel, entry.journal, [], bindings, existing, route);
          this.known.delete(id);
          log.warn(`${vhost}/${entry.definition.name} is no longer selected by TIDEMARK_PROTECT: later checkpoints leave it out`);
        } else if (existing.has(entry.journal)) {
          // The source is gone: its journal must stop receiving what the queue no longer gets.
          await this.provision(channel, entry.journal, [], bindings, existing, route);
          if (!entry.deleted) log.warn(`protected queue ${vhost}/${entry.definition.name} no longer exists; its journal and checkpoints are kept`);
          entry.deleted = true;
        } else {
          this.known.delete(id);
          log.error(`the journal of deleted queue ${vhost}/${entry.definition.name} is gone too: later checkpoints leave it out; earlier ones still hold it`);
        }
      }
    } finally {
      await channel.close().catch(() => {});
    }
    return vhostExchanges
      .filter((e) => usedExchanges.has(e.name))
      .map((e) => ({
        vhost,
        name: e.name,
        type: e.type,
        durable: e.durable,
        autoDelete: e.autoDelete,
        internal: e.internal,
        arguments: toFieldTable(e.arguments ?? {}),
      }));
  }

  /** The name of a vhost's journal retention policy. */
  private policyName(): string {
    return `${this.options.namespace}.journals`;
  }

  /** The bound an earlier leader left in the journal policies, so a new leader goes on from it. */
  private async adoptBound(vhosts: string[]): Promise<void> {
    for (const vhost of vhosts) {
      const policies = await this.options.management.listPolicies(vhost).catch(() => new Map<string, Record<string, unknown>>());
      const bound = policies.get(this.policyName())?.['max-length-bytes'];
      if (typeof bound === 'number' && bound > 0) {
        this.options.retention!.adopt(bound, this.known.size);
        return;
      }
    }
  }

  /**
   * Makes the vhost's journal policy hold the bound in force. RabbitMQ applies one policy per
   * queue, the highest priority; a journal under another policy keeps only its own arguments.
   */
  private async applyRetention(vhost: string, policies: Map<string, Record<string, unknown>>, queues: { name: string; policy?: string }[]): Promise<void> {
    const bound = this.options.retention?.boundBytes;
    if (bound === undefined) return;
    const { namespace, management, log } = this.options;
    const name = this.policyName();
    if (policies.get(name)?.['max-length-bytes'] !== bound) {
      try {
        await management.putPolicy(vhost, name, {
          pattern: `^${namespace.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.journal\\.`,
          applyTo: 'queues',
          priority: JOURNAL_POLICY_PRIORITY,
          definition: { 'max-length-bytes': bound },
        });
        this.policyFailed.delete(vhost);
      } catch (err) {
        // Capture goes on: the journals keep their own arguments meanwhile.
        if (!this.policyFailed.has(vhost)) {
          log.error(
            `cannot set the journal retention policy ${name} in vhost ${vhost} (the management user needs the policymaker tag): ${errorMessage(err)}; ` +
              'its journals are bounded only by their own arguments until it can',
          );
        }
        this.policyFailed.add(vhost);
      }
    }
    const other = queues.find((q) => q.name.startsWith(`${namespace}.journal.`) && q.policy && q.policy !== name);
    if (other && !this.warnedPolicy.has(vhost)) {
      this.warnedPolicy.add(vhost);
      log.warn(
        `journal ${vhost}/${other.name} is under policy ${other.policy}, not ${name}: RabbitMQ applies one policy per queue, so Tidemark's ` +
          `journal retention does not reach it; keep other policies off ${namespace}.journal.* (docs/OPERATIONS.md#journal-retention)`,
      );
    }
  }

  private readonly warnedPolicy = new Set<string>();
  private readonly policyFailed = new Set<string>();

  /** Reads the shed journals an earlier leader recorded, once. */
  private async loadShed(): Promise<void> {
    if (this.shedLoaded || !this.options.shedLog) return;
    try {
      for (const [id, record] of await this.options.shedLog.all()) if (!this.shed.has(id)) this.shed.set(id, record);
      this.shedLoaded = true;
    } catch (err) {
      this.options.log.warn(`reading the shed journals from Redis, will retry: ${errorMessage(err)}`);
    }
  }

  /** Queues whose journal is newer than their latest checkpoint, with what happened. */
  private renewed(): Map<string, string> {
    const renewed = new Map<string, string>();
    for (const [id, entry] of this.known) {
      const createdAt = this.journalCreatedAt.get(id);
      const shed = this.shed.get(id);
      // A shed queue left out of checkpoints since is renewed all the same.
      const checkpointedAt = this.checkpointedAt.get(id) ?? shed?.checkpointedAtMs;
      if (createdAt === undefined || checkpointedAt === undefined || createdAt <= checkpointedAt) continue;
      const cause = shed?.reason ?? 'its journal was deleted (outside Tidemark?)';
      renewed.set(
        id,
        `not protected between ${new Date(checkpointedAt).toISOString()} and ${new Date(createdAt).toISOString()}: ${cause}; ` +
          `messages that entered ${entry.definition.vhost}/${entry.definition.name} in between are in no checkpoint`,
      );
    }
    return renewed;
  }

  /**
   * Disk pressure with journals at their smallest bound: stops protecting the journal holding the
   * most messages (the broker does not report a stream's bytes) and deletes it, freeing its disk.
   * The queue then waits for the guard like a new one, and is renewed when it has room again.
   */
  private async shedLargest(pressure: string): Promise<void> {
    const { management } = this.options;
    let largest: { id: string; entry: ProtectedQueue; messages: number } | undefined;
    for (const vhost of new Set([...this.known.values()].map((k) => k.definition.vhost))) {
      const counts = await management.queueCounts(vhost);
      for (const [id, entry] of this.known) {
        if (entry.definition.vhost !== vhost) continue;
        const messages = counts.get(entry.journal)?.messages ?? 0;
        if (!largest || messages > largest.messages) largest = { id, entry, messages };
      }
    }
    if (!largest) return;
    const { vhost, name } = largest.entry.definition;
    const channel = await this.channel(vhost);
    try {
      await channel.deleteQueue(largest.entry.journal);
    } finally {
      await channel.close().catch(() => {});
    }
    const shedAtMs = Date.now();
    const why = `its journal (${largest.messages} messages, the largest) was deleted at ${new Date(shedAtMs).toISOString()} to keep the broker's disk alarm off (${pressure})`;
    const record: ShedJournal = { reason: why, shedAtMs, checkpointedAtMs: this.checkpointedAt.get(largest.id) ?? 0 };
    this.known.delete(largest.id);
    this.journalCreatedAt.delete(largest.id);
    this.shed.set(largest.id, record);
    await this.options.shedLog?.add(largest.id, record).catch((err) => this.options.log.warn(`recording the shed journal of ${vhost}/${name}: ${errorMessage(err)}`));
    this.options.log.error(
      `${vhost}/${name} is not protected any more: ${why}. Its checkpoints so far are kept; it is protected again, from a new journal, once the disk has room`,
    );
  }

  /**
   * Deletes the journal an earlier Tidemark named `<namespace>.journal.<queue>` where that name
   * does not fit the vhost's stream directory (services/core/names.ts): RabbitMQ never started its
   * stream, so it holds nothing, and every publish routed to it waits for a confirm that never
   * comes. Deleting it releases those publishes; the queue's journal is `journal` now.
   */
  private async deleteUnstartable(channel: Channel, vhost: string, queue: string, journal: string, streams: Set<string>, existing: Set<string>): Promise<void> {
    const { namespace, log } = this.options;
    const old = `${namespace}.journal.${queue}`;
    if (old === journal || !streams.has(old) || streamDirectoryLength(vhost, old) <= MAX_FILE_NAME_BYTES) return;
    await channel.deleteQueue(old);
    streams.delete(old);
    existing.delete(old);
    log.warn(
      `deleted stream ${vhost}/${old}: its name is too long for RabbitMQ's stream directory, so it never started and held nothing, ` +
        `and publishes routed to it were never confirmed; queue ${vhost}/${queue} is journaled in ${journal}`,
    );
  }

  /**
   * Firehose mode (services/core/firehose.ts): the tracer on, the firehose queue bound to the
   * trace of every exchange that can reach a protected queue (directly or through exchange-to-
   * exchange bindings), of the default exchange and of the fence exchange, and the relay exchange.
   */
  private async provisionFirehose(channel: Channel, vhost: string, queues: string[], all: BindingInfo[], existing: Set<string>): Promise<void> {
    const { namespace, management, log } = this.options;
    const queue = firehoseQueueName(namespace);
    if (!existing.has(queue)) {
      await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-single-active-consumer': true } });
      log.info(`vhost ${vhost} is captured through the firehose: created ${queue}`);
    }
    await channel.assertExchange(relayExchangeName(namespace), 'direct', { durable: true });
    if (!(await management.vhostTracing(vhost))) {
      await management.setVhostTracing(vhost, true);
      log.warn(`turned on the firehose tracer of vhost ${vhost} (TIDEMARK_FIREHOSE_VHOSTS): every publish in it is now copied to ${TRACE_EXCHANGE}`);
    }
    const keys = new Set([traceKeyOf(''), traceKeyOf(fenceExchangeName(namespace)), ...reachingExchanges(queues, all).map(traceKeyOf)]);
    const current = all.filter((b) => b.destination === queue && b.destinationType === 'queue' && b.source === TRACE_EXCHANGE);
    for (const key of keys) await channel.bindQueue(queue, TRACE_EXCHANGE, key);
    for (const b of current) {
      if (!keys.has(b.routingKey)) await channel.unbindQueue(queue, TRACE_EXCHANGE, b.routingKey, b.arguments ?? {});
    }
  }

  /**
   * A vhost taken out of firehose mode: its journals are bound to the sources again (by the
   * caller), no new trace copies enter the firehose queue, and the queue is deleted once the relay
   * has emptied it. Returns true when it is gone.
   */
  private async drainFirehose(channel: Channel, vhost: string, all: BindingInfo[]): Promise<boolean> {
    const queue = firehoseQueueName(this.options.namespace);
    for (const b of all.filter((b) => b.destination === queue && b.source === TRACE_EXCHANGE)) {
      await channel.unbindQueue(queue, TRACE_EXCHANGE, b.routingKey, b.arguments ?? {});
    }
    const { messageCount } = await channel.checkQueue(queue);
    if (messageCount > 0) {
      this.options.log.info(`vhost ${vhost} left firehose mode: waiting for the relay to empty ${queue} (${messageCount} left)`);
      return false;
    }
    await channel.deleteQueue(queue);
    this.options.log.warn(
      `vhost ${vhost} left firehose mode: deleted ${queue}; its tracer stays on (turn it off with rabbitmqctl trace_off if nothing else uses it)`,
    );
    return true;
  }

  /** A deleted vhost took its journals with it: its queues cannot be checkpointed any more. */
  private forgetVhost(vhost: string): void {
    for (const [id, entry] of this.known) {
      if (entry.definition.vhost !== vhost) continue;
      this.known.delete(id);
      this.options.log.error(`vhost ${vhost} was deleted with the journal of ${entry.definition.name}: later checkpoints leave it out; earlier ones still hold it`);
    }
  }

  private async channel(vhost: string): Promise<Channel> {
    const connection = await this.options.connections.connect(vhost);
    const channel = await connection.createChannel();
    channel.on('error', (err) => this.options.log.warn(`provisioning channel in ${vhost}: ${errorMessage(err)}`));
    return channel;
  }

  /**
   * Declares the journal stream if missing and makes its bindings what `route` asks for: the
   * source's bindings plus the fence exchange, or in firehose mode only the relay exchange (under
   * the journal's name and the fence key); while the firehose drains, both. Returns when it
   * declared the journal (its x-tidemark-created-at), undefined if the journal existed.
   */
  private async provision(
    channel: Channel,
    journal: string,
    wanted: BindingInfo[],
    all: BindingInfo[],
    existing: Set<string>,
    route: JournalRoute,
  ): Promise<number | undefined> {
    const { namespace } = this.options;
    let declaredAt: number | undefined;
    // An existing journal is not declared again: its arguments (x-max-age) were fixed when it was
    // made, and a declaration with other values would fail.
    if (!existing.has(journal)) {
      const createdAt = Date.now();
      await channel.assertQueue(journal, {
        durable: true,
        arguments: {
          ...journalArguments(this.options.journalMaxAge, this.options.journalMaxBytes ?? 0, this.options.retention?.boundBytes),
          [CREATED_AT_ARGUMENT]: createdAt,
        },
      });
      existing.add(journal);
      declaredAt = createdAt;
    }
    const own: Array<{ source: string; routingKey: string }> = [];
    if (route !== 'firehose') own.push({ source: fenceExchangeName(namespace), routingKey: '' });
    if (route !== 'bindings') {
      const relay = relayExchangeName(namespace);
      own.push({ source: relay, routingKey: journal }, { source: relay, routingKey: relayFenceKey(namespace) });
    }
    // Bound on every pass, whatever the listing says: a fence must never miss a protected journal.
    for (const b of own) await channel.bindQueue(journal, b.source, b.routingKey);
    const sources = route === 'firehose' ? [] : wanted;
    const current = all.filter((b) => b.destination === journal && b.destinationType === 'queue' && b.source !== '');
    const same = (a: { source: string; routingKey: string; arguments?: Record<string, unknown> }, b: BindingInfo) =>
      a.source === b.source && a.routingKey === b.routingKey && JSON.stringify(a.arguments ?? {}) === JSON.stringify(b.arguments ?? {});
    for (const b of sources) {
      if (!current.some((c) => same(b, c))) await channel.bindQueue(journal, b.source, b.routingKey, b.arguments ?? {});
    }
    for (const c of current) {
      if (![...own, ...sources].some((b) => same(b, c))) await channel.unbindQueue(journal, c.source, c.routingKey, c.arguments ?? {});
    }
    return declaredAt;
  }
}

/**
 * The arguments of a new journal stream: `maxBytes` (journalMaxBytes, 0 for none) is a hard cap
 * of its own; `boundBytes` the retention bound in force (journal-retention.ts), which the vhost's
 * journal policy applies. Segments are sized from the smaller, so that retention, which removes
 * whole segments, can keep the journal near it.
 */
export function journalArguments(maxAge: string, maxBytes: number, boundBytes?: number): Record<string, unknown> {
  const args: Record<string, unknown> = { 'x-queue-type': 'stream', 'x-max-age': maxAge };
  if (maxBytes > 0) args['x-max-length-bytes'] = maxBytes;
  const kept = [maxBytes > 0 ? maxBytes : undefined, boundBytes].filter((b): b is number => b !== undefined && b > 0);
  const segment = segmentBytesFor(kept.length > 0 ? Math.min(...kept) : undefined);
  if (segment !== undefined) args['x-stream-max-segment-size-bytes'] = segment;
  return args;
}

/** The journal argument that records when Tidemark declared it (ms since the epoch). */
export const CREATED_AT_ARGUMENT = 'x-tidemark-created-at';

/** Above the usual operator policies, so the journal policy is the one RabbitMQ applies to journals. */
const JOURNAL_POLICY_PRIORITY = 100;

/** How a journal is fed: by bindings, through the firehose relay, or both while the firehose drains. */
type JournalRoute = 'bindings' | 'firehose' | 'draining';

/** Every exchange a publish can enter to reach one of `queues`, through any chain of exchange bindings. */
export function reachingExchanges(queues: string[], all: BindingInfo[]): string[] {
  const targets = new Set(queues);
  const found = new Set<string>();
  const pending: string[] = [];
  for (const b of all) {
    if (b.destinationType === 'queue' && targets.has(b.destination) && b.source !== '' && !found.has(b.source)) {
      found.add(b.source);
      pending.push(b.source);
    }
  }
  while (pending.length > 0) {
    const exchange = pending.pop()!;
    for (const b of all) {
      if (b.destinationType === 'exchange' && b.destination === exchange && !found.has(b.source)) {
        found.add(b.source);
        pending.push(b.source);
      }
    }
  }
  return [...found].sort();
}

