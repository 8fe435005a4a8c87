/**
 * Journals never fill the broker's disk (G6). The leader bounds what every journal keeps with a
 * policy sized from the broker's free disk, and backs off as the disk fills: it shrinks the bound
 * to its floor, then stops protecting the largest journal, one per discovery pass, before the
 * broker's disk alarm would block producers. When the disk has room again the queues are protected
 * again from new journals, and their next checkpoint marks them possibly incomplete.
 *
 * The disk cannot be filled on a shared machine, so the test moves the line instead: a coordinator
 * restarted with a `guardDiskMargin` larger than the disk sees the broker's real figures as "full".
 */
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManagementClient } from '../../services/core/amqp/management-client.js';
import { RoundOutcome, type StatusReply } from '../../services/gen/tidemark/v1/admin.js';
import { CREATED_AT_ARGUMENT } from '../../services/coordinator/journal-renewals.js';
import type { TestCluster } from '../helpers/cluster.js';
import { startProtectedVhost, type ProtectedVhost } from '../helpers/protected-vhost.js';
import { amqpUrlForVhost, type TestServices } from '../helpers/services.js';
import { streamHolds } from '../helpers/stream-holds.js';
import { eventually } from '../helpers/eventually.js';

const CAP = 8_000_000;
const FLOOR = 2_000_000;
const BODY = 4_096;
/** Messages per queue: the big one keeps more than the others even once trimmed to 2 MB, so the order of shedding is known. */
const LOAD = { 'jr-big': 1_500, 'jr-mid': 120, 'jr-small': 40 } as const;
const QUEUES = Object.keys(LOAD).map((name) => ({ name, type: 'classic' }));
const FULL_DISK = String(1024 ** 5);

let setup: ProtectedVhost | undefined;
let services: TestServices;
let vhost: string;
let cluster: TestCluster;
let management: ManagementClient;

async function publish(queue: string, count: number): Promise<void> {
  const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
  try {
    const channel = await connection.createConfirmChannel();
    const body = Buffer.alloc(BODY, 'x');
    for (let i = 0; i < count; i += 100) {
      for (let k = i; k < Math.min(count, i + 100); k += 1) channel.publish('jr', queue, body, { messageId: `${queue}-${k}` });
      // A producer blocked by Tidemark would wait here forever: the timeout turns that into a failure.
      await Promise.race([
        channel.waitForConfirms(),
        new Promise((_, reject) => setTimeout(() => reject(new Error(`publishes to ${queue} were not confirmed within 20 s`)), 20_000)),
      ]);
    }
  } finally {
    await connection.close().catch(() => {});
  }
}

async function journalPolicyBound(): Promise<unknown> {
  const policies = await management.listPolicies(vhost);
  return policies.get(`${cluster.env.TIDEMARK_NAMESPACE}.journals`)?.['max-length-bytes'];
}

const unprotectedNames = (s: StatusReply) => s.unprotected.map((u) => u.queue).sort();

async function restartCoordinator(env: Record<string, string>): Promise<void> {
  cluster.signal('coordinator', 'SIGTERM');
  await cluster.exited('coordinator');
  cluster.restart('coordinator', env);
}

describe('journal retention under disk pressure', () => {
  beforeAll(async () => {
    setup = await startProtectedVhost({
      exchange: 'jr',
      queues: QUEUES,
      workers: 1,
      processEnv: { coordinator: { TIDEMARK_JOURNAL_MAX_BYTES: String(CAP), TIDEMARK_JOURNAL_MIN_BYTES: String(FLOOR) } },
    });
    ({ services, vhost, cluster } = setup);
    management = new ManagementClient(services.managementUrl);
  }, 120_000);

  afterAll(async () => {
    await setup?.stop();
  }, 60_000);

  it('bounds every journal by a policy, shrinks it as the disk fills, then sheds the largest journal first', { timeout: 300_000 }, async () => {
    // Plenty of disk: the bound is the cap, applied as the vhost's journal policy; journals are
    // declared with segments small enough for it and with the time they were declared.
    await cluster.waitForStatus((s) => s.journalBoundBytes === CAP, `the journal bound at the ${CAP}-byte cap`);
    await eventually(`the journal policy at ${CAP}`, async () => (await journalPolicyBound()) === CAP);
    const journals = (await management.listQueues(vhost)).filter((q) => q.name.includes('.journal.'));
    expect(journals).toHaveLength(QUEUES.length);
    for (const j of journals) {
      expect(j.arguments['x-stream-max-segment-size-bytes']).toBe(1_000_000);
      expect(typeof j.arguments[CREATED_AT_ARGUMENT]).toBe('number');
    }
    for (const [queue, count] of Object.entries(LOAD)) await publish(queue, count);
    const first = await cluster.client.checkpoint(true);
    expect(first.outcome, first.reason).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    const bigJournal = (await cluster.client.getCheckpoint(String(first.epoch))).queues.find((q) => q.definition?.name === 'jr-big')!.journal;
    expect((await streamHolds(services.amqpUrl, vhost, bigJournal)).first, 'the big journal holds all 6 MB, under the cap').toBe(0);

    // A smaller bound reaches journals declared before it: the policy, not their arguments, now
    // rules, and RabbitMQ drops their oldest segments as new ones start.
    await restartCoordinator({ TIDEMARK_JOURNAL_MAX_BYTES: String(FLOOR), TIDEMARK_JOURNAL_MIN_BYTES: String(FLOOR) });
    await cluster.waitForStatus((s) => s.leader && s.journalBoundBytes === FLOOR && s.journalPressure === '', `the journal bound lowered to ${FLOOR}`);
    // The status shows the bound as soon as the pass decides it; the policy follows in the same pass.
    await eventually(`the journal policy at ${FLOOR}`, async () => (await journalPolicyBound()) === FLOOR);
    await publish('jr-big', 300);
    const trimmed = await streamHolds(services.amqpUrl, vhost, bigJournal);
    expect(trimmed.first, 'the big journal dropped its oldest segments').toBeGreaterThan(0);
    expect(trimmed.records * BODY, 'bytes the big journal still holds (the bound and a 1 MB segment or two)').toBeLessThanOrEqual(FLOOR + 2_000_000);

    // The disk "fills": the bound drops to its floor at once (here it is there already), and the
    // leader reports the pressure.
    // Passes 3 s apart, so the status shows each shed journal on its own.
    await restartCoordinator({
      TIDEMARK_JOURNAL_MAX_BYTES: String(CAP),
      TIDEMARK_JOURNAL_MIN_BYTES: String(FLOOR),
      TIDEMARK_GUARD_DISK_MARGIN: FULL_DISK,
      TIDEMARK_DISCOVERY_INTERVAL: '3s',
    });
    const pressed = await cluster.waitForStatus((s) => s.leader && s.journalPressure !== '', 'disk pressure reported');
    expect(pressed.journalPressure).toMatch(/disk_free_limit/);
    await cluster.waitForStatus((s) => s.journalBoundBytes === FLOOR, `the journal bound at its ${FLOOR}-byte floor`);
    await eventually(`the journal policy at ${FLOOR}`, async () => (await journalPolicyBound()) === FLOOR);

    // Then the largest journal goes first, one per pass; producers are never held up.
    const firstShed = await cluster.waitForStatus((s) => s.unprotectedCount > 0, 'a journal shed', 60_000);
    expect(unprotectedNames(firstShed)).toEqual(['jr-big']);
    expect(firstShed.unprotected[0].reason).toMatch(/the largest\) was deleted .* to keep the broker's disk alarm off/);
    expect((await management.listQueues(vhost)).some((q) => q.name === bigJournal)).toBe(false);
    await publish('jr-big', 50);
    const allShed = await cluster.waitForStatus((s) => s.unprotectedCount === QUEUES.length, 'every journal shed under lasting pressure', 60_000);
    expect(allShed.protectedQueues).toBe(0);
    for (const queue of Object.keys(LOAD)) await publish(queue, 20);

    // The disk has room again: every queue is protected anew, and its next checkpoint says that
    // what entered it while it was not protected is in no checkpoint.
    await restartCoordinator({ TIDEMARK_JOURNAL_MAX_BYTES: String(CAP), TIDEMARK_JOURNAL_MIN_BYTES: String(FLOOR) });
    await cluster.waitForStatus(
      (s) => s.leader && s.protectedQueues === QUEUES.length && s.unprotectedCount === 0 && s.journalPressure === '' && s.workers.reduce((n, w) => n + w.queues, 0) === QUEUES.length,
      'every queue protected again',
      90_000,
    );
    await publish('jr-small', 10);
    const renewed = await cluster.client.checkpoint(true);
    expect(renewed.outcome, renewed.reason).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    const manifest = await cluster.client.getCheckpoint(String(renewed.epoch));
    for (const entry of manifest.queues) {
      expect(entry.incomplete, `${entry.definition?.name} is marked`).toHaveLength(1);
      expect(entry.incomplete[0].reason).toMatch(/not protected between .* are in no checkpoint/);
      expect(entry.incomplete[0].afterOffset).toBe(0);
    }
    // Captured afresh from the new journal: the 10 messages published since, nothing older.
    expect(manifest.queues.find((q) => q.definition?.name === 'jr-small')!.messages).toBe(10);
    const status = await cluster.client.status();
    expect(status.incompleteQueues.map((q) => q.queue).sort()).toEqual(Object.keys(LOAD).sort());
  });

  it('a journal deleted outside Tidemark is declared again, capture starts afresh, and the checkpoint says what is missing', { timeout: 120_000 }, async () => {
    const before = await cluster.client.checkpoint(true);
    expect(before.outcome, before.reason).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    const entry = (await cluster.client.getCheckpoint(String(before.epoch))).queues.find((q) => q.definition?.name === 'jr-mid')!;
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    try {
      await (await connection.createChannel()).deleteQueue(entry.journal);
    } finally {
      await connection.close().catch(() => {});
    }
    await publish('jr-mid', 5);
    // Rounds go on (a journal whose offsets no longer match its checkpoints once stopped every
    // round for good); the queue is back from its new journal, marked.
    const marked = await eventually(
      'a committed checkpoint that marks jr-mid as renewed',
      async () => {
        const round = await cluster.client.checkpoint(true);
        if (round.outcome !== RoundOutcome.ROUND_OUTCOME_COMMITTED) return undefined;
        const q = (await cluster.client.getCheckpoint(String(round.epoch))).queues.find((e) => e.definition?.name === 'jr-mid');
        const reasons = (q?.incomplete ?? []).map((m) => m.reason).filter((r) => r.includes('outside Tidemark'));
        return reasons.length > 0 && reasons;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    expect(marked).toHaveLength(1);
    expect(marked[0]).toMatch(/not protected between .* deleted \(outside Tidemark\?\)/);
    await publish('jr-mid', 7);
    const after = await cluster.client.checkpoint(true);
    expect(after.outcome, after.reason).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    const mid = (await cluster.client.getCheckpoint(String(after.epoch))).queues.find((e) => e.definition?.name === 'jr-mid')!;
    expect(mid.incomplete).toHaveLength(1);
    expect(mid.startOffset, 'captured from the new journal').toBe(0);
  });
});
