/**
 * Broker resource guard (G6): Tidemark never pushes the broker past its resources. Each journal is
 * a stream that holds files open on the broker for as long as it exists; past its open-file limit
 * a RabbitMQ 3.10 node fails with `emfile` and stays broken until restarted. So before discovery
 * declares new journals it reads every node's headroom from the management API (/api/nodes) and
 * declares only as many as fit within the configured shares of the node's limits. Queues beyond
 * that wait, reported with the reason and what to change.
 *
 * Invariants:
 * - A journal already declared is never removed by the guard: protected queues stay protected;
 *   only new ones wait. Their files are part of `fd_used` already, so they are not counted again.
 * - The decision is stable: the broker refreshes its figures only every stats interval (5 s by
 *   default), so journals declared within the last {@link SETTLE_MS} are charged on top of the
 *   reading. That can only make a pass admit fewer, never undo an admission.
 *
 * {@link journalBudget} is the pure decision; {@link ResourceGuard} reads the broker and keeps the
 * recent declarations and the log of changes.
 */
import { type Clock, errorMessage, formatBytes, type Logger, systemClock } from '../core/index.js';
import type { NodeResources } from '../core/amqp/index.js';

/** Broker memory one journal costs: measured about 100 KB (stream, its reader), rounded up. */
export const JOURNAL_MEMORY_COST = 128 * 1024;
/** Erlang processes one journal costs: measured about one (writer) plus the reader's, rounded up. */
export const JOURNAL_PROCESS_COST = 3;
/** Share of a node's Erlang process and socket limits new journals may take it to. */
const COUNT_FRACTION = 0.8;
/** How long a declared journal is charged on top of the broker's figures (3 stats intervals). */
export const SETTLE_MS = 15_000;

/** The guard's settings (config keys guardFdFraction, guardMemFraction, guardDiskMargin, journalFdCost, maxJournals). */
export interface GuardLimits {
  /** New journals only while each node's fd_used stays within this share of fd_total. @default 0.8 */
  fdFraction: number;
  /** New journals only while each node's mem_used stays within this share of mem_limit. @default 0.8 */
  memFraction: number;
  /** New journals only while each node's disk_free is this many bytes above disk_free_limit. @default 1 GiB */
  diskMargin: number;
  /** Open files per journal (stream files, the worker's reader, a margin). @default 4 */
  journalFdCost: number;
  /** Most journals this installation keeps; 0 for no cap of its own. @default 0 */
  maxJournals: number;
}

/** What binds the budget; `kind` is stable across passes, `message` carries today's numbers. */
export interface GuardReason {
  kind: 'files' | 'memory' | 'memory-alarm' | 'disk' | 'disk-alarm' | 'processes' | 'sockets' | 'max-journals' | 'unreadable';
  message: string;
}

export interface JournalBudget {
  /** New journals that may be declared now. */
  allowed: number;
  /** The tightest limit: why not more. */
  reason: GuardReason;
}

const NOFILE_ADVICE = "raise RabbitMQ's nofile limit (docs/OPERATIONS.md#broker-resources) or narrow TIDEMARK_PROTECT";

/**
 * How many new journals the broker has room for. `journals` is how many this installation has
 * now (their files are in the figures already); `pending` how many it declared so recently that
 * the figures may not show them yet.
 */
export function journalBudget(nodes: readonly NodeResources[], limits: GuardLimits, counts: { journals: number; pending: number }): JournalBudget {
  const candidates: JournalBudget[] = [];
  const fit = (room: number, cost: number) => Math.max(0, Math.floor(room / cost));
  const keptFree = (fraction: number) => `${Math.round((1 - fraction) * 100)}% kept free`;
  const measured = nodes.filter((n) => n.running && n.fdUsed !== undefined && n.fdTotal !== undefined);
  if (measured.length === 0) {
    return {
      allowed: 0,
      reason: { kind: 'unreadable', message: 'the management API reports no resource figures for any broker node: no new journals until it does' },
    };
  }
  for (const n of measured) {
    if (n.memAlarm) {
      candidates.push({ allowed: 0, reason: { kind: 'memory-alarm', message: `memory alarm on broker node ${n.name} (RabbitMQ is blocking publishers): no new journals until it clears` } });
    }
    if (n.diskFreeAlarm) {
      candidates.push({ allowed: 0, reason: { kind: 'disk-alarm', message: `disk alarm on broker node ${n.name} (RabbitMQ is blocking publishers): no new journals until it clears` } });
    }
    if (n.diskFree !== undefined && n.diskFreeLimit !== undefined && n.diskFree - n.diskFreeLimit < limits.diskMargin) {
      candidates.push({
        allowed: 0,
        reason: {
          kind: 'disk',
          message:
            `broker node ${n.name} has ${mib(n.diskFree)} of disk free, within ${mib(limits.diskMargin)} of its disk_free_limit (${mib(n.diskFreeLimit)}): ` +
            'no new journals; free disk on the broker, shorten journal retention (docs/OPERATIONS.md#broker-resources) or lower guardDiskMargin',
        },
      });
    }
    const files = fit(limits.fdFraction * n.fdTotal! - n.fdUsed! - counts.pending * limits.journalFdCost, limits.journalFdCost);
    candidates.push({
      allowed: files,
      reason: {
        kind: 'files',
        message:
          `broker node ${n.name}'s open-file limit ${n.fdTotal} leaves room for ${files} more journal(s) ` +
          `(${n.fdUsed} files in use, ${limits.journalFdCost} per journal, ${keptFree(limits.fdFraction)}; ${counts.journals} journal(s) declared); ${NOFILE_ADVICE}`,
      },
    });
    if (n.memUsed !== undefined && n.memLimit !== undefined) {
      const memory = fit(limits.memFraction * n.memLimit - n.memUsed - counts.pending * JOURNAL_MEMORY_COST, JOURNAL_MEMORY_COST);
      candidates.push({
        allowed: memory,
        reason: {
          kind: 'memory',
          message:
            `broker node ${n.name} uses ${mib(n.memUsed)} of its ${mib(n.memLimit)} memory high watermark, room for ${memory} more journal(s) ` +
            `(${keptFree(limits.memFraction)}); give RabbitMQ more memory (vm_memory_high_watermark) or narrow TIDEMARK_PROTECT`,
        },
      });
    }
    if (n.procUsed !== undefined && n.procTotal !== undefined) {
      const processes = fit(COUNT_FRACTION * n.procTotal - n.procUsed - counts.pending * JOURNAL_PROCESS_COST, JOURNAL_PROCESS_COST);
      candidates.push({
        allowed: processes,
        reason: {
          kind: 'processes',
          message: `broker node ${n.name} runs ${n.procUsed} of its ${n.procTotal} Erlang processes, room for ${processes} more journal(s); raise RabbitMQ's process limit (+P) or narrow TIDEMARK_PROTECT`,
        },
      });
    }
    if (n.socketsUsed !== undefined && n.socketsTotal !== undefined && n.socketsUsed >= COUNT_FRACTION * n.socketsTotal) {
      candidates.push({
        allowed: 0,
        reason: {
          kind: 'sockets',
          message: `broker node ${n.name} has ${n.socketsUsed} of its ${n.socketsTotal} sockets in use: no new journals (workers would need connections); ${NOFILE_ADVICE}`,
        },
      });
    }
  }
  if (limits.maxJournals > 0) {
    const cap = Math.max(0, limits.maxJournals - counts.journals);
    candidates.push({
      allowed: cap,
      reason: { kind: 'max-journals', message: `maxJournals (TIDEMARK_MAX_JOURNALS) allows ${limits.maxJournals} journal(s) and ${counts.journals} are declared; raise it or narrow TIDEMARK_PROTECT` },
    });
  }
  // The tightest limit wins; among equals the first (alarms and disk come before counts).
  return candidates.reduce((tightest, c) => (c.allowed < tightest.allowed ? c : tightest));
}

export function mib(bytes: number): string {
  return formatBytes(bytes, { smallest: 'MiB', largest: 'GiB' });
}

/** A queue the guard holds back. */
export interface WaitingQueue {
  vhost: string;
  queue: string;
  reason: string;
}

/** One discovery pass's allowance of new journals. */
export class JournalAdmission {
  private left: number;

  constructor(
    readonly budget: JournalBudget,
    private readonly declared: () => void,
  ) {
    this.left = budget.allowed;
  }

  /** Takes one new journal from the allowance; false when there is no room left. */
  admit(): boolean {
    if (this.left <= 0) return false;
    this.left -= 1;
    this.declared();
    return true;
  }

  get reason(): string {
    return this.budget.reason.message;
  }
}

export interface ResourceGuardOptions {
  management: { nodes(): Promise<NodeResources[]> };
  limits: GuardLimits;
  log: Logger;
  /** When journals were declared, for the settling window. @default systemClock */
  clock?: Clock;
}

/** Reads the broker's headroom for each discovery pass, and logs when what it holds back changes. */
export class ResourceGuard {
  /** When each recent new journal was declared, oldest first. */
  private recent: number[] = [];
  private lastNodes: NodeResources[] = [];
  private logged: { kind: string; count: number } = { kind: '', count: 0 };
  private readonly clock: Clock;

  constructor(private readonly options: ResourceGuardOptions) {
    this.clock = options.clock ?? systemClock;
  }

  /** The nodes as last read (empty before the first pass or when the read failed). */
  get nodes(): readonly NodeResources[] {
    return this.lastNodes;
  }

  /** The allowance of the pass about to run; `journals` is how many this installation has now. */
  async open(journals: number): Promise<JournalAdmission> {
    const now = this.clock.now();
    this.recent = this.recent.filter((at) => now - at < SETTLE_MS);
    let budget: JournalBudget;
    try {
      this.lastNodes = await this.options.management.nodes();
      budget = journalBudget(this.lastNodes, this.options.limits, { journals, pending: this.recent.length });
    } catch (err) {
      this.lastNodes = [];
      budget = {
        allowed: 0,
        reason: {
          kind: 'unreadable',
          message: `cannot read the broker's resources (GET /api/nodes; the management user needs the monitoring tag): ${errorMessage(err)}; no new journals until it can`,
        },
      };
    }
    return new JournalAdmission(budget, () => this.recent.push(this.clock.now()));
  }

  /** Logs what the pass held back when its kind or count changed since the last report. */
  report(waiting: readonly WaitingQueue[], admission: JournalAdmission | undefined): void {
    const kind = waiting.length === 0 ? '' : (admission?.budget.reason.kind ?? '');
    if (kind === this.logged.kind && waiting.length === this.logged.count) return;
    const before = this.logged.count;
    this.logged = { kind, count: waiting.length };
    if (waiting.length === 0) {
      if (before > 0) this.options.log.info('broker resource guard: every selected queue has its journal now');
      return;
    }
    this.options.log.warn('broker resource guard: selected queues get no journal and no checkpoints yet; protected queues stay protected; see "tidemark status"', {
      waiting: waiting.length,
      example: { vhost: waiting[0].vhost, queue: waiting[0].queue },
      limit: kind,
      reason: admission?.reason ?? '',
    });
  }
}
