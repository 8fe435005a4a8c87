/**
 * Discovery and journal provisioning. Each pass lists the broker's vhosts, queues, bindings and
 * exchanges through the management API, picks the protected queues, and makes sure each has its
 * journal stream bound exactly like the source (plus the vhost's fence exchange).
 *
 * Invariant: a queue joins the protected set only after its journal is bound to the fence
 * exchange, so every fence published afterwards lands in its journal.
 *
 * A protected queue that disappears from the broker stays protected as "deleted": its journal
 * loses the source bindings (so it stops receiving what the queue no longer gets) but keeps the
 * fence binding, and checkpoints keep carrying its data forward.
 */
import type { Channel } from 'amqplib';
import type { ExchangeDefinition, QueueDefinition } from '../gen/tidemark/v1/store.js';
import { ManagementClient, queueBindings, type BindingInfo } from '../core/amqp/management-client.js';
import type { VhostConnections } from '../core/amqp/vhost-connections.js';
import { ProtectionPolicy } from '../core/protect.js';
import { toFieldTable } from '../core/field-table.js';
import { fenceExchangeName, isOwnObject, journalName } from '../core/names.js';
import type { Logger } from '../core/log.js';
import { errorMessage } from '../core/errors.js';
import { queueKey } from './checkpoint-round.js';

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
}

export interface DiscoveryOptions {
  namespace: string;
  /** x-max-age of new journal streams. */
  journalMaxAge: string;
  management: ManagementClient;
  connections: VhostConnections;
  policy: ProtectionPolicy;
  log: Logger;
}

export class Discovery {
  /** Queues protected so far; survives passes so deleted sources are remembered. */
  private readonly known = new Map<string, ProtectedQueue>();

  constructor(private readonly options: DiscoveryOptions) {}

  /** Seeds the protected set from the latest manifest, so deletions while no leader ran are kept. */
  remember(queues: ProtectedQueue[]): void {
    for (const q of queues) {
      const id = queueKey(q.definition.vhost, q.definition.name);
      if (!this.known.has(id)) this.known.set(id, { ...q, deleted: true });
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
    const { management, policy, namespace } = this.options;
    const problems: string[] = [];
    await this.checkBroker().catch(() => {
      this.brokerChecked = false;
    });
    const vhosts = (await management.listVhosts()).filter((vhost) => policy.coversVhost(vhost));
    const exchanges: ExchangeDefinition[] = [];
    const seen = new Set<string>();
    for (const vhost of vhosts) {
      try {
        const [queues, bindings, vhostExchanges] = await Promise.all([
          management.listQueues(vhost),
          management.listBindings(vhost),
          management.listExchanges(vhost),
        ]);
        const chosen = queues.filter((q) => !q.exclusive && !isOwnObject(namespace, q.name) && policy.matches(vhost, q.name));
        const hasKnown = [...this.known.values()].some((k) => k.definition.vhost === vhost);
        if (chosen.length === 0 && !hasKnown) continue;
        const channel = await this.channel(vhost);
        try {
          await channel.assertExchange(fenceExchangeName(namespace), 'fanout', { durable: true });
          const usedExchanges = new Set<string>();
          for (const q of chosen) {
            const id = queueKey(vhost, q.name);
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
            const journal = journalName(namespace, q.name);
            await this.provision(channel, vhost, journal, explicit, bindings);
            explicit.forEach((b) => usedExchanges.add(b.source));
            this.known.set(id, { definition, journal, deleted: false });
            seen.add(id);
          }
          for (const [id, known] of this.known) {
            if (known.definition.vhost !== vhost || seen.has(id) || known.deleted) continue;
            // The source is gone: stop its journal from receiving what the queue no longer gets.
            await this.provision(channel, vhost, known.journal, [], bindings);
            known.deleted = true;
            this.options.log.warn(`protected queue ${vhost}/${known.definition.name} no longer exists; its journal and checkpoints are kept`);
          }
          for (const e of vhostExchanges) {
            if (usedExchanges.has(e.name)) {
              exchanges.push({
                vhost,
                name: e.name,
                type: e.type,
                durable: e.durable,
                autoDelete: e.autoDelete,
                internal: e.internal,
                arguments: toFieldTable(e.arguments ?? {}),
              });
            }
          }
        } finally {
          await channel.close().catch(() => {});
        }
      } catch (err) {
        problems.push(`vhost ${vhost}: ${errorMessage(err)}`);
        this.options.log.warn(`discovery of vhost ${vhost} failed: ${errorMessage(err)}`);
      }
    }
    // Queues of vhosts that failed this pass stay in the set as they were: a failed listing
    // must not look like a deletion.
    return { queues: new Map(this.known), exchanges, vhosts: [...new Set([...this.known.values()].map((q) => q.definition.vhost))], problems };
  }

  private async channel(vhost: string): Promise<Channel> {
    const connection = await this.options.connections.connect(vhost);
    const channel = await connection.createChannel();
    channel.on('error', (err) => this.options.log.warn(`provisioning channel in ${vhost}: ${errorMessage(err)}`));
    return channel;
  }

  /** Declares the journal stream and makes its bindings equal the source's plus the fence. */
  private async provision(channel: Channel, vhost: string, journal: string, wanted: BindingInfo[], all: BindingInfo[]): Promise<void> {
    const fence = fenceExchangeName(this.options.namespace);
    await channel.assertQueue(journal, { durable: true, arguments: { 'x-queue-type': 'stream', 'x-max-age': this.options.journalMaxAge } });
    await channel.bindQueue(journal, fence, '');
    const current = all.filter((b) => b.destination === journal && b.destinationType === 'queue' && b.source !== '' && b.source !== fence);
    const same = (a: BindingInfo, b: BindingInfo) =>
      a.source === b.source && a.routingKey === b.routingKey && JSON.stringify(a.arguments ?? {}) === JSON.stringify(b.arguments ?? {});
    for (const b of wanted) {
      if (!current.some((c) => same(c, b))) await channel.bindQueue(journal, b.source, b.routingKey, b.arguments ?? {});
    }
    for (const c of current) {
      if (!wanted.some((b) => same(c, b))) await channel.unbindQueue(journal, c.source, c.routingKey, c.arguments ?? {});
    }
    void vhost;
  }
}
