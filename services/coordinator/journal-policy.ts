/**
 * The journal retention policy of each vhost (journal-retention.ts decides the bound): a RabbitMQ
 * policy `<namespace>.journals` on `^<namespace>\.journal\.` with `max-length-bytes`, rewritten
 * only when the bound changes. RabbitMQ applies one policy per queue, the highest priority: a
 * journal under another policy keeps only its own arguments, which is reported once per vhost.
 */
import type { JournalRetention } from './journal-retention.js';
import { errorMessage, type Logger } from '../core/index.js';
import type { ManagementClient } from '../core/amqp/index.js';

/** Above the usual operator policies, so the journal policy is the one RabbitMQ applies to journals. */
const JOURNAL_POLICY_PRIORITY = 100;

export class JournalPolicies {
  private readonly warnedOther = new Set<string>();
  private readonly failed = new Set<string>();
  private adopted = false;

  constructor(
    private readonly options: { namespace: string; management: ManagementClient; retention: JournalRetention; log: Logger },
  ) {}

  /** The name of a vhost's journal retention policy. */
  get name(): string {
    return `${this.options.namespace}.journals`;
  }

  /** The bound an earlier leader left in the journal policies, so a new leader goes on from it (looked for once). */
  async adopt(vhosts: string[], journals: number): Promise<void> {
    if (this.adopted || this.options.retention.boundBytes !== undefined) return;
    this.adopted = true;
    for (const vhost of vhosts) {
      const policies = await this.options.management.listPolicies(vhost).catch(() => new Map<string, Record<string, unknown>>());
      const bound = policies.get(this.name)?.['max-length-bytes'];
      if (typeof bound === 'number' && bound > 0) {
        this.options.retention.adopt(bound, journals);
        return;
      }
    }
  }

  /**
   * Makes the vhost's policy hold the bound in force. A failure is logged (once per vhost until it
   * works again) and never stops discovery: the journals keep their own arguments meanwhile.
   */
  async apply(vhost: string, policies: Map<string, Record<string, unknown>>, queues: ReadonlyArray<{ name: string; policy?: string }>): Promise<void> {
    const { namespace, management, retention, log } = this.options;
    const bound = retention.boundBytes;
    if (bound === undefined) return;
    const name = this.name;
    if (policies.get(name)?.['max-length-bytes'] !== bound) {
      try {
        await management.putPolicy(vhost, name, {
          pattern: `^${namespace.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.journal\\.`,
          applyTo: 'queues',
          priority: JOURNAL_POLICY_PRIORITY,
          definition: { 'max-length-bytes': bound },
        });
        this.failed.delete(vhost);
      } catch (err) {
        if (!this.failed.has(vhost)) {
          log.error(
            'cannot set the journal retention policy (the management user needs the policymaker tag): ' +
              'the vhost\'s journals are bounded only by their own arguments until it can',
            { vhost, policy: name, err: errorMessage(err) },
          );
        }
        this.failed.add(vhost);
      }
    }
    const other = queues.find((q) => q.name.startsWith(`${namespace}.journal.`) && q.policy && q.policy !== name);
    if (other && !this.warnedOther.has(vhost)) {
      this.warnedOther.add(vhost);
      log.warn(
        'a journal is under another policy: RabbitMQ applies one policy per queue, so Tidemark\'s journal retention does not reach it; ' +
          'keep other policies off <namespace>.journal.* (docs/OPERATIONS.md#journal-retention)',
        { vhost, journal: other.name, policy: other.policy, expectedPolicy: name },
      );
    }
  }
}
