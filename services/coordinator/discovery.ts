/**
 * Discovery and journal provisioning. Each pass lists the broker's vhosts, queues, bindings and
 * exchanges through the management API, picks the protected queues, and makes sure each has its
 * journal stream bound exactly like the source (plus the vhost's fence exchange).
 *
 * Invariant: a queue joins the protected set only after its journal is bound to the fence
 * exchange, so every fence published afterwards lands in its journal.
 *
 * In a firehose vhost (services/core/amqp/firehose.ts) journals are bound only to the relay exchange,
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
 * A journal declared again after the queue's latest checkpoint (its earlier one was shed or
 * deleted by someone) is *renewed* (journal-renewals.ts): capture starts afresh, and the next
 * checkpoint marks the queue. Declaring and binding one journal is in journal-provisioning.ts,
 * firehose provisioning in firehose-provisioning.ts, the journal policy in journal-policy.ts.
 */
import type { ExchangeDefinition, QueueDefinition } from '../gen/tidemark/v1/store.js';
import {
  type Clock,
  errorMessage,
  fenceExchangeName,
  firehoseQueueName,
  isOwnObject,
  journalName,
  type Logger,
  NotFoundError,
  ProtectionPolicy,
  queueKey,
  systemClock,
  toFieldTable,
} from '../core/index.js';
import { ManagementClient, queueBindings, type VhostConnections } from '../core/amqp/index.js';
import { sentinelName } from './broker-continuity.js';
import type { JournalAdmission, ResourceGuard, WaitingQueue } from './resource-guard.js';
import type { JournalRetention } from './journal-retention.js';
import type { ShedJournals } from './shed-journals.js';
import { CREATED_AT_ARGUMENT, JournalRenewals } from './journal-renewals.js';
import { JournalPolicies } from './journal-policy.js';
import { drainFirehose, provisionFirehose } from './firehose-provisioning.js';
import {
  deleteUnstartableJournal,
  type JournalProvisioningContext,
  type JournalRoute,
  provisionJournal,
  provisioningChannel,
} from './journal-provisioning.js';
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
  /** Stamps new journals and shed times. @default systemClock */
  clock?: Clock;
  log: Logger;
}

export class Discovery {
  /** Queues protected so far; survives passes so deleted sources are remembered. */
  private readonly known = new Map<string, ProtectedQueue>();
  /** Uncapturable entry paths of protected queues, by queueKey, as of each vhost's last good pass. */
  private readonly uncapturable = new Map<string, string[]>();
  private readonly renewals: JournalRenewals;
  private readonly policies: JournalPolicies | undefined;
  private readonly clock: Clock;
  private readonly provisioning: JournalProvisioningContext;

  constructor(private readonly options: DiscoveryOptions) {
    this.clock = options.clock ?? systemClock;
    this.provisioning = { ...options, clock: this.clock };
    this.renewals = new JournalRenewals(options.log, options.shedLog);
    this.policies = options.retention && new JournalPolicies({ ...options, retention: options.retention });
  }

  /**
   * A checkpoint holding `queues` (by queueKey) inside its cut, whose round started at
   * `startedAtMs`, committed; `carried` are those it carries from older cuts (JournalRenewals.committed).
   */
  committed(queues: ReadonlySet<string>, startedAtMs: number, carried?: ReadonlyMap<string, number>): void {
    this.renewals.committed(queues, startedAtMs, carried);
  }

  /**
   * Seeds the protected set from the latest manifest, so a queue deleted while no leader ran is
   * still carried (and its journal released) by the next pass.
   */
  remember(queues: ProtectedQueue[], startedAtMs: number, carried?: ReadonlyMap<string, number>): void {
    const inside = queues.map((q) => queueKey(q.definition.vhost, q.definition.name)).filter((id) => !carried?.has(id));
    this.committed(new Set(inside), startedAtMs, carried);
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
        'this RabbitMQ version\'s streams drop nested tables and arrays from headers (e.g. x-death), and a message ' +
          'with a decimal header routed to a stream closes its publisher\'s connection. Journals inherit both; see docs/OPERATIONS.md',
        { rabbitmqVersion },
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
    await this.renewals.load();
    const admission = await this.options.guard?.open(this.known.size);
    const retention = this.options.retention;
    await this.policies?.adopt(vhosts, this.known.size);
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
        this.options.log.warn('discovery of a vhost failed', { vhost, err: errorMessage(err) });
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
      renewed: this.renewals.renewed([...this.known].map(([id, q]) => [id, `${q.definition.vhost}/${q.definition.name}`])),
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
    const channel = await provisioningChannel(this.provisioning, vhost);
    const usedExchanges = new Set<string>();
    try {
      await channel.assertExchange(fenceExchangeName(namespace), 'fanout', { durable: true });
      await this.policies?.apply(vhost, policies, queues);
      // A journal never predates its vhost's restart sentinel (broker-continuity.ts). Once journals
      // exist, a missing sentinel is a restart to mark, and only a committed round declares it again.
      const sentinel = sentinelName(namespace);
      if (!existing.has(sentinel) && !queues.some((q) => q.name.startsWith(`${namespace}.journal.`))) {
        await channel.assertQueue(sentinel, { durable: false, autoDelete: false, exclusive: false });
      }
      // Firehose capture must see a new queue's publishes before the queue joins the set.
      let route: JournalRoute = 'bindings';
      if (firehose) {
        await provisionFirehose(this.options, channel, vhost, chosen.map((q) => q.name), bindings, existing);
        route = 'firehose';
      } else if (existing.has(firehoseQueue)) {
        route = (await drainFirehose(this.options, channel, vhost, bindings)) ? 'bindings' : 'draining';
      }
      const seen = new Set<string>();
      for (const q of chosen) {
        const id = queueKey(vhost, q.name);
        let journal: string;
        try {
          journal = journalName(namespace, vhost, q.name);
        } catch (err) {
          problems.push(`queue ${vhost}/${q.name}: ${errorMessage(err)}`);
          log.warn('queue not protected', { vhost, queue: q.name, err: errorMessage(err) });
          continue;
        }
        await deleteUnstartableJournal(this.provisioning, channel, vhost, q.name, journal, streams, existing);
        // A queue with a journal (protected, or by an earlier leader) costs nothing new.
        if (admission && !this.known.has(id) && !existing.has(journal) && !admission.admit()) {
          const shed = this.renewals.shedReason(id);
          waiting.push({ vhost, queue: q.name, reason: shed ? `${shed}; ${admission.reason}` : admission.reason });
          continue;
        }
        if (this.known.has(id) && !existing.has(journal)) {
          log.error(
            'the journal of a protected queue is gone (deleted outside Tidemark?): declaring it again; ' +
              'what entered the queue meanwhile is in no checkpoint, and its next checkpoint marks it possibly incomplete',
            { vhost, queue: q.name, journal },
          );
        }
        if (existing.has(journal)) this.renewals.listed(id, queues.find((j) => j.name === journal)?.arguments?.[CREATED_AT_ARGUMENT]);
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
        const declaredAt = await provisionJournal(this.provisioning, channel, journal, explicit, bindings, existing, route);
        if (declaredAt !== undefined) this.renewals.declared(id, declaredAt);
        explicit.forEach((b) => usedExchanges.add(b.source));
        this.known.set(id, { definition, journal, deleted: false });
        seen.add(id);
      }
      for (const [id, entry] of known) {
        if (seen.has(id)) continue;
        if (!policy.matches(vhost, entry.definition.name)) {
          // No longer selected: stop capturing it; its journal and earlier checkpoints stay.
          if (existing.has(entry.journal)) await provisionJournal(this.provisioning, channel, entry.journal, [], bindings, existing, route);
          this.known.delete(id);
          log.warn('queue no longer selected by TIDEMARK_PROTECT: later checkpoints leave it out', { vhost, queue: entry.definition.name });
        } else if (existing.has(entry.journal)) {
          // The source is gone: its journal must stop receiving what the queue no longer gets.
          await provisionJournal(this.provisioning, channel, entry.journal, [], bindings, existing, route);
          if (!entry.deleted) log.warn('protected queue no longer exists; its journal and checkpoints are kept', { vhost, queue: entry.definition.name });
          entry.deleted = true;
        } else {
          this.known.delete(id);
          log.error('the journal of a deleted queue is gone too: later checkpoints leave it out; earlier ones still hold it', { vhost, queue: entry.definition.name });
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

  /**
   * Disk pressure with journals at their smallest bound: stops protecting the journal holding the
   * most messages (the broker does not report a stream's bytes) and deletes it, freeing its disk.
   * The queue then waits for the guard like a new one, and is renewed when it has room again.
   * Journals of deleted source queues are not shed: they no longer grow, and they carry the data.
   */
  private async shedLargest(pressure: string): Promise<void> {
    const { management } = this.options;
    let largest: { id: string; entry: ProtectedQueue; messages: number } | undefined;
    for (const vhost of new Set([...this.known.values()].map((k) => k.definition.vhost))) {
      const counts = await management.queueCounts(vhost);
      for (const [id, entry] of this.known) {
        if (entry.definition.vhost !== vhost || entry.deleted) continue;
        const messages = counts.get(entry.journal)?.messages ?? 0;
        if (!largest || messages > largest.messages) largest = { id, entry, messages };
      }
    }
    if (!largest) return;
    const { vhost, name } = largest.entry.definition;
    const channel = await provisioningChannel(this.provisioning, vhost);
    try {
      await channel.deleteQueue(largest.entry.journal);
    } finally {
      await channel.close().catch(() => {});
    }
    const shedAtMs = this.clock.now();
    const why = `its journal (${largest.messages} messages, the largest) was deleted at ${new Date(shedAtMs).toISOString()} to keep the broker's disk alarm off (${pressure})`;
    this.known.delete(largest.id);
    await this.renewals.shedNow(largest.id, why, shedAtMs);
    this.options.log.error('queue not protected any more: its journal was deleted to keep the broker\'s disk alarm off. Its checkpoints so far are kept; it is protected again, from a new journal, once the disk has room', {
      vhost,
      queue: name,
      journal: largest.entry.journal,
      messages: largest.messages,
      reason: why,
    });
  }

  /** A deleted vhost took its journals with it: its queues cannot be checkpointed any more. */
  private forgetVhost(vhost: string): void {
    for (const [id, entry] of this.known) {
      if (entry.definition.vhost !== vhost) continue;
      this.known.delete(id);
      this.options.log.error('vhost deleted with the journal of a protected queue: later checkpoints leave it out; earlier ones still hold it', { vhost, queue: entry.definition.name });
    }
  }
}
