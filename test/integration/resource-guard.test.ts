/**
 * The broker resource guard at work (G6): asked to protect more queues than its budget allows, the
 * leader declares only the budgeted journals, reports the rest with the reason in status (text and
 * --json) and the metrics, keeps checkpointing the protected ones, and leaves the broker healthy.
 * A new leader with an even smaller budget keeps what is protected and holds back only the rest.
 */
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManagementClient } from '../../services/core/amqp/management-client.js';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import { journalName } from '../../services/core/format/names.js';
import { declareBoundQueues } from '../helpers/broker.js';
import { brokerHealthProblems } from '../helpers/broker-health.js';
import { runCli } from '../helpers/cli.js';
import { freePort, startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { readClusterLog } from '../helpers/log-lines.js';
import { scrape } from '../helpers/metrics.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';

const BUDGET = 5;
const QUEUES = Array.from({ length: 8 }, (_, i) => ({ name: `guard-${i}`, type: i % 2 === 0 ? 'classic' : 'quorum' }));

let services: TestServices;
let vhost: string;
let namespace: string;
let cluster: TestCluster;
let metricsPort: number;

/** The journals of this installation that exist on the broker. */
async function journalsOnBroker(): Promise<string[]> {
  const queues = await new ManagementClient(services.managementUrl).listQueues(vhost);
  const journals = new Set(QUEUES.map((q) => journalName(namespace, vhost, q.name)));
  return queues.filter((q) => journals.has(q.name)).map((q) => q.name);
}

async function statusJson(): Promise<Record<string, any>> {
  const result = await runCli(['status', '--json'], cluster.env);
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as Record<string, any>;
}

async function publishToAll(perQueue: number): Promise<void> {
  const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
  try {
    const channel = await connection.createConfirmChannel();
    for (const q of QUEUES) for (let k = 0; k < perQueue; k += 1) channel.publish('guard', q.name, Buffer.from(`${q.name}:${k}`));
    await channel.waitForConfirms();
  } finally {
    await connection.close().catch(() => {});
  }
}

describe('broker resource guard', () => {
  beforeAll(async () => {
    services = await testServices();
    vhost = uniqueName('tm-guard');
    namespace = uniqueName('tmg');
    metricsPort = await freePort();
    await createTestVhost(services.managementUrl, vhost);
    await declareBoundQueues(services.amqpUrl, vhost, 'guard', QUEUES);
    cluster = await startTestCluster({
      services,
      namespace,
      protect: `${vhost}:guard-*`,
      store: { kind: 'file' },
      workers: 2,
      extraEnv: { TIDEMARK_DISCOVERY_INTERVAL: '1s' },
      processEnv: { coordinator: { TIDEMARK_MAX_JOURNALS: String(BUDGET), TIDEMARK_METRICS_LISTEN: `127.0.0.1:${metricsPort}` } },
    });
    await cluster.waitForStatus(
      (s) => s.protectedQueues === BUDGET && s.unprotectedCount === QUEUES.length - BUDGET && s.workers.reduce((n, w) => n + w.queues, 0) === BUDGET,
      `${BUDGET} queues protected, ${QUEUES.length - BUDGET} held back`,
    );
  }, 120_000);

  afterAll(async () => {
    await cluster?.stop();
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
  }, 60_000);

  it('declares only the budgeted journals and reports the other queues with the reason', async () => {
    // Several discovery passes later, still exactly the budget: no flapping, no overshoot.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(await journalsOnBroker()).toHaveLength(BUDGET);

    const status = await statusJson();
    expect(status.protectedQueues).toBe(BUDGET);
    expect(status.unprotectedCount).toBe(QUEUES.length - BUDGET);
    expect(status.unprotected).toHaveLength(QUEUES.length - BUDGET);
    for (const u of status.unprotected) {
      expect(u.vhost).toBe(vhost);
      expect(QUEUES.map((q) => q.name)).toContain(u.queue);
      expect(u.reason).toContain(`maxJournals (TIDEMARK_MAX_JOURNALS) allows ${BUDGET} journal(s)`);
    }
    // The guard's last reading of the broker is in status too.
    expect(status.brokerNodes.length).toBeGreaterThan(0);
    expect(status.brokerNodes[0].fdTotal).toBeGreaterThan(status.brokerNodes[0].fdUsed);

    const text = await runCli(['status'], cluster.env);
    expect(text.stdout).toContain(`NOT PROTECTED: ${QUEUES.length - BUDGET} selected queue(s) have no journal and no checkpoints`);
    expect(text.stdout).toContain('TIDEMARK_MAX_JOURNALS');

    const metrics = await scrape(metricsPort);
    expect(metrics.get('tidemark_unprotected_queues')).toBe(QUEUES.length - BUDGET);
    expect(metrics.get('tidemark_protected_queues')).toBe(BUDGET);

    // Logged once, not on every discovery pass.
    const warnings = readClusterLog(cluster.logFile).filter((l) => l.entry?.msg.startsWith('broker resource guard:'));
    expect(warnings.map((l) => l.line), 'the resource guard\'s log lines').toHaveLength(1);
    expect(warnings[0].entry).toMatchObject({ level: 'warn', waiting: QUEUES.length - BUDGET, limit: 'max-journals', reason: expect.stringContaining('TIDEMARK_MAX_JOURNALS') });
  });

  it('keeps committing checkpoints of the protected queues', async () => {
    for (let round = 1; round <= 2; round += 1) {
      await publishToAll(3);
      const result = await cluster.client.checkpoint(true);
      expect(result.reason).toBe('');
      expect(result.outcome).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
      const manifest = await cluster.client.getCheckpoint(String(result.epoch));
      expect(manifest.queues).toHaveLength(BUDGET);
      for (const q of manifest.queues) expect(q.messages).toBe(3 * round);
    }
  });

  it('a new leader with a smaller budget keeps every protected queue and holds back only new ones', async () => {
    const before = (await statusJson()).unprotected.map((u: { queue: string }) => u.queue).sort();
    await cluster.kill('coordinator');
    // Room for no new journal at all: 0.1 % of the open-file limit is below what is in use.
    cluster.restart('coordinator', { TIDEMARK_GUARD_FD_FRACTION: '0.001', TIDEMARK_METRICS_LISTEN: `127.0.0.1:${metricsPort}` });
    await cluster.waitForStatus(
      (s) => s.leader && s.protectedQueues === BUDGET && s.unprotectedCount === QUEUES.length - BUDGET && s.workers.reduce((n, w) => n + w.queues, 0) === BUDGET,
      'the new leader protecting the same queues',
      60_000,
    );
    const status = await statusJson();
    expect(status.unprotected.map((u: { queue: string }) => u.queue).sort()).toEqual(before);
    expect(status.unprotected[0].reason).toMatch(/open-file limit \d+ leaves room for 0 more journal\(s\)/);
    expect(status.unprotected[0].reason).toContain("raise RabbitMQ's nofile");
    expect(await journalsOnBroker()).toHaveLength(BUDGET);

    await publishToAll(1);
    const result = await cluster.client.checkpoint(true);
    expect(result.outcome).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    expect((await cluster.client.getCheckpoint(String(result.epoch))).queues).toHaveLength(BUDGET);
  }, 120_000);

  it('leaves the broker healthy', async () => {
    expect(await brokerHealthProblems(services.managementUrl)).toEqual([]);
  });
});
