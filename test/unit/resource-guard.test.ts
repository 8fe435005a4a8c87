import { describe, expect, it } from 'vitest';
import type { NodeResources } from '../../services/core/amqp/management-types.js';
import { JOURNAL_MEMORY_COST, ResourceGuard, SETTLE_MS, journalBudget, type GuardLimits, type WaitingQueue } from '../../services/coordinator/resource-guard.js';
import type { Logger } from '../../services/core/infrastructure/log.js';

const GiB = 1024 ** 3;
const limits: GuardLimits = { fdFraction: 0.8, memFraction: 0.8, diskMargin: GiB, journalFdCost: 4, maxJournals: 0 };

/** A roomy node: everything but what a test sets is far from its limit. */
function node(overrides: Partial<NodeResources> = {}): NodeResources {
  return {
    name: 'rabbit@a',
    running: true,
    fdUsed: 100,
    fdTotal: 1024,
    memUsed: 200 * 1024 ** 2,
    memLimit: 4 * GiB,
    memAlarm: false,
    diskFree: 50 * GiB,
    diskFreeLimit: 50 * 1024 ** 2,
    diskFreeAlarm: false,
    socketsUsed: 3,
    socketsTotal: 900,
    procUsed: 400,
    procTotal: 1_048_576,
    ...overrides,
  };
}

describe('journal budget', () => {
  it('fits new journals within the share of the open-file limit, counting what is in use', () => {
    // 0.8 × 1024 = 819 files; 819 - 100 = 719 free; 719 / 4 = 179 journals.
    const budget = journalBudget([node()], limits, { journals: 0, pending: 0 });
    expect(budget.allowed).toBe(179);
    expect(budget.reason.kind).toBe('files');
    expect(budget.reason.message).toContain('open-file limit 1024 leaves room for 179 more journal(s)');
    expect(budget.reason.message).toContain("raise RabbitMQ's nofile");
    expect(budget.reason.message).toContain('TIDEMARK_PROTECT');
  });

  it('charges journals declared since the last reading on top of it', () => {
    expect(journalBudget([node()], limits, { journals: 50, pending: 50 }).allowed).toBe(129);
  });

  it('allows none, never a negative number, once the files in use pass the share', () => {
    expect(journalBudget([node({ fdUsed: 900 })], limits, { journals: 200, pending: 0 }).allowed).toBe(0);
  });

  it('takes the tightest node of a cluster', () => {
    const budget = journalBudget([node(), node({ name: 'rabbit@b', fdUsed: 700 })], limits, { journals: 0, pending: 0 });
    expect(budget.allowed).toBe(29);
    expect(budget.reason.message).toContain('rabbit@b');
  });

  it('refuses new journals during a memory or disk alarm, and near the disk limit', () => {
    expect(journalBudget([node({ memAlarm: true })], limits, { journals: 0, pending: 0 }).reason.kind).toBe('memory-alarm');
    expect(journalBudget([node({ diskFreeAlarm: true })], limits, { journals: 0, pending: 0 }).reason.kind).toBe('disk-alarm');
    const disk = journalBudget([node({ diskFree: 50 * 1024 ** 2 + GiB / 2 })], limits, { journals: 0, pending: 0 });
    expect(disk).toMatchObject({ allowed: 0, reason: { kind: 'disk' } });
    expect(disk.reason.message).toContain('guardDiskMargin');
  });

  it('fits new journals within the share of the memory high watermark', () => {
    const memLimit = 1 * GiB;
    const memUsed = 0.8 * memLimit - 10 * JOURNAL_MEMORY_COST;
    expect(journalBudget([node({ memUsed, memLimit })], limits, { journals: 0, pending: 0 })).toMatchObject({ allowed: 10, reason: { kind: 'memory' } });
  });

  it('caps the journals of the installation at maxJournals', () => {
    const budget = journalBudget([node()], { ...limits, maxJournals: 12 }, { journals: 10, pending: 0 });
    expect(budget).toMatchObject({ allowed: 2, reason: { kind: 'max-journals' } });
    expect(journalBudget([node()], { ...limits, maxJournals: 12 }, { journals: 15, pending: 0 }).allowed).toBe(0);
  });

  it('allows nothing when no node reports figures, and skips a node that is not running', () => {
    expect(journalBudget([node({ running: false, fdUsed: undefined, fdTotal: undefined })], limits, { journals: 0, pending: 0 })).toMatchObject({ allowed: 0, reason: { kind: 'unreadable' } });
    expect(journalBudget([node(), node({ name: 'rabbit@down', running: false, fdUsed: undefined, fdTotal: undefined })], limits, { journals: 0, pending: 0 }).allowed).toBe(179);
  });
});

function recordingLog(): Logger & { lines: string[]; fields: Array<Record<string, unknown> | undefined> } {
  const lines: string[] = [];
  const fields: Array<Record<string, unknown> | undefined> = [];
  const record = (level: string) => (m: string, f?: Record<string, unknown>) => {
    lines.push(`${level} ${m}`);
    fields.push(f);
  };
  const log = { lines, fields, debug: () => {}, info: record('info'), warn: record('warn'), error: record('error'), child: () => log };
  return log;
}

describe('resource guard', () => {
  it('admits up to the budget per pass and keeps charging fresh journals until the broker figures can show them', async () => {
    let now = 1_000_000;
    const reading = node({ fdUsed: 800, fdTotal: 1024 }); // room for 4 journals: (819 - 800) / 4
    const guard = new ResourceGuard({ management: { nodes: async () => [reading] }, limits, log: recordingLog(), clock: { now: () => now } });
    const first = await guard.open(0);
    expect([1, 2, 3, 4, 5].map(() => first.admit())).toEqual([true, true, true, true, false]);
    // The broker has not refreshed its figures yet: the four are charged, nothing more fits.
    now += 5_000;
    expect((await guard.open(4)).admit()).toBe(false);
    // Later the broker reports fd_used with them (a stable reading): still no room, no flapping.
    reading.fdUsed = 816;
    now += SETTLE_MS;
    expect((await guard.open(4)).admit()).toBe(false);
  });

  it('admits nothing when the broker cannot be read, and says why', async () => {
    const guard = new ResourceGuard({ management: { nodes: async () => Promise.reject(new Error('HTTP 403')) }, limits, log: recordingLog() });
    const admission = await guard.open(3);
    expect(admission.admit()).toBe(false);
    expect(admission.reason).toContain('monitoring tag');
    expect(admission.reason).toContain('HTTP 403');
  });

  it('logs what it holds back once per change, not every pass', async () => {
    const log = recordingLog();
    const guard = new ResourceGuard({ management: { nodes: async () => [node({ fdUsed: 819 })] }, limits, log });
    const waiting = (n: number): WaitingQueue[] => Array.from({ length: n }, (_, i) => ({ vhost: 'v', queue: `q${i}`, reason: 'r' }));
    const admission = await guard.open(10);
    guard.report(waiting(3), admission);
    guard.report(waiting(3), admission);
    guard.report(waiting(3), admission);
    expect(log.lines).toHaveLength(1);
    expect(log.lines[0]).toMatch(/^warn broker resource guard: selected queues get no journal/);
    expect(log.fields[0]).toMatchObject({ waiting: 3, limit: 'files', example: { vhost: 'v', queue: 'q0' }, reason: expect.stringContaining('open-file limit') });
    guard.report(waiting(4), admission);
    guard.report([], admission);
    guard.report([], admission);
    expect(log.lines).toHaveLength(3);
    expect(log.fields[1]).toMatchObject({ waiting: 4 });
    expect(log.lines[2]).toBe('info broker resource guard: every selected queue has its journal now');
  });
});
