/**
 * The short chaos run (the full one is `npm run chaos`): a cluster of two coordinators and three
 * workers on the run's own Redis and S3 server, under causal publishing, survives a worker
 * SIGKILL, a leader SIGKILL, a cut of a worker's link to the coordinators, an S3 server restart
 * and a Redis restart. After each fault a round commits; every checkpoint restored meanwhile and
 * the final one hold each confirmed message once, in order, and no B without its A.
 *
 * RabbitMQ is not restarted here: other test files share the broker. `npm run chaos` does it.
 */
import amqp from 'amqplib';
import { describe, expect, it } from 'vitest';
import { ReconnectingCausalProducer } from '../chaos/causal-producer.js';
import { ChaosRun, summaryLine, type ChaosReport } from '../chaos/chaos-run.js';
import { seededRandom, type FaultKind } from '../chaos/faults.js';
import { COUNTERS, History } from '../chaos/history.js';
import { closeConnectionsNamed } from '../chaos/own-services.js';
import { drainQueue } from '../chaos/restore-check.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName } from '../helpers/services.js';
import { eventually } from '../helpers/eventually.js';

const SCHEDULE: FaultKind[] = ['worker-kill', 'leader-kill', 'link-blackhole', 's3-restart', 'redis-restart'];

function describeReport(report: ChaosReport): string {
  const faults = report.faults.map((f) => `${f.kind} on ${f.target}: ${f.recoverS === undefined ? 'no commit' : `${f.recoverS.toFixed(1)} s`}`);
  const examples = report.verdict.checkpoints.flatMap((c) => c.examples.map((e) => `checkpoint ${c.epoch} (${c.label}) ${e}`));
  return [summaryLine(report), ...faults, ...examples, ...report.problems, ...report.notes, `cluster log: ${report.logFile}`].join('\n');
}

const until = async (what: string, predicate: () => boolean, timeoutMs = 20_000): Promise<void> => {
  await eventually(what, predicate, { timeoutMs, intervalMs: 50 });
};

describe('the chaos causal producer', () => {
  it('reconnects when the broker drops its connection, and every message it calls confirmed is in the queues', async () => {
    const services = await testServices();
    const vhost = uniqueName('tm-chaos-producer');
    await createTestVhost(services.managementUrl, vhost);
    try {
      const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
      const channel = await connection.createChannel();
      await channel.assertExchange('events', 'direct', { durable: true });
      for (const q of ['qa', 'qb']) {
        await channel.assertQueue(q, { durable: true });
        await channel.bindQueue(q, 'events', q);
      }
      await connection.close();
      const history = new History();
      const producer = new ReconnectingCausalProducer({ amqpUrl: services.amqpUrl, vhost, exchange: 'events', queueA: 'qa', queueB: 'qb', name: 'p', history, pauseMs: 2 });
      producer.start();
      for (let cut = 1; cut <= 2; cut += 1) {
        const pairs = producer.stats.pairs;
        await until('pairs published', () => producer.stats.pairs >= pairs + 50);
        // The management API lists a new connection only after a moment.
        let closed = 0;
        for (let tries = 0; closed === 0 && tries < 100; tries += 1) {
          closed = await closeConnectionsNamed(services.managementUrl, producer.connectionName);
          if (closed === 0) await new Promise((r) => setTimeout(r, 200));
        }
        expect(closed, 'producer connections closed by the broker').toBe(1);
        await until(`reconnect ${cut}`, () => producer.stats.reconnects >= cut);
      }
      await until('pairs after the last reconnect', () => producer.stats.pairs >= 200);
      await producer.stop();
      const stoppedAt = Date.now();

      // The broker's own queues are the ground truth here: no Tidemark in between.
      const queues = new Map<string, Array<string | undefined>>();
      for (const q of ['qa', 'qb']) {
        queues.set(q, await drainQueue(services.amqpUrl, vhost, q, 'classic', history.attemptsTo(q).filter((a) => a.status === 'confirmed').length));
      }
      history.restored({ epoch: 0, label: 'source queues', mustHoldConfirmedBeforeMs: stoppedAt, queues });
      const verdict = history.check();
      expect(Object.fromEntries(COUNTERS.map((c) => [c, verdict[c]])), verdict.checkpoints[0].examples.join('; ')).toEqual({ lost: 0, duplicated: 0, unexpected: 0, reordered: 0, causal: 0 });
      expect(verdict.confirmed).toBeGreaterThanOrEqual(400);
      expect(producer.stats.reconnects).toBeGreaterThanOrEqual(2);
    } finally {
      await deleteTestVhost(services.managementUrl, vhost);
    }
  });
});

describe('a cluster under chaos', () => {
  it('commits after every fault and restores every confirmed message once, in order, causally consistent', { timeout: 240_000 }, async () => {
    const services = await testServices();
    const progress: string[] = [];
    const run = new ChaosRun({
      amqpUrl: services.amqpUrl,
      managementUrl: services.managementUrl,
      schedule: SCHEDULE,
      random: seededRandom(7),
      holdMs: 2_500,
      settleMs: 500,
      recoveryTimeoutMs: 45_000,
      log: (line) => progress.push(line),
    });
    const report = await run.run();
    const details = `${describeReport(report)}\n${progress.join('\n')}`;
    console.log(summaryLine(report));

    expect(report.faults.map((f) => f.kind), details).toEqual(SCHEDULE);
    for (const fault of report.faults) expect(fault.recoverS, `${fault.kind}: a round begun after healing committed\n${details}`).toBeDefined();
    expect(report.problems, details).toEqual([]);
    expect(
      { lost: report.verdict.lost, duplicated: report.verdict.duplicated, unexpected: report.verdict.unexpected, reordered: report.verdict.reordered, causal: report.verdict.causal },
      details,
    ).toEqual({ lost: 0, duplicated: 0, unexpected: 0, reordered: 0, causal: 0 });
    // The checks looked at something: a baseline, the first checkpoint after each fault (and any
    // whose round overlapped it) and the final one.
    const labels = report.verdict.checkpoints.map((c) => c.label).filter((l) => !l.startsWith('during '));
    expect(labels, details).toEqual(['baseline', ...SCHEDULE.map((k) => `after ${k}`), 'final']);
    expect(report.verdict.confirmed, details).toBeGreaterThan(500);
    expect(report.verdict.checkpoints.at(-1)!.restored, details).toBeGreaterThanOrEqual(report.verdict.confirmed);
  });
});
