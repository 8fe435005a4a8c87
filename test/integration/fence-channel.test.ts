/**
 * The leader keeps one fence channel per vhost open across rounds (docs/SCALE.md: the first
 * publish on a new channel to many journals is the slow one). A channel the broker closed
 * between rounds must never be reused: the next checkpoint opens another and commits.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import type { TestCluster } from '../helpers/cluster.js';
import { RoundRobinProducer } from '../helpers/producers.js';
import { managementJson, type TestServices } from '../helpers/services.js';
import { startProtectedVhost, type ProtectedVhost } from '../helpers/protected-vhost.js';
import { eventually } from '../helpers/eventually.js';

const QUEUES = [
  { name: 'fc-a', type: 'classic' },
  { name: 'fc-b', type: 'quorum' },
] as const;

let services: TestServices;
let vhost: string;
let cluster: TestCluster;
let setup: ProtectedVhost | undefined;

interface ConnectionInfo {
  name: string;
  vhost: string;
  client_properties?: { connection_name?: string };
}

/** The coordinator's AMQP connections to the test vhost (fences and discovery use them). */
async function coordinatorConnections(): Promise<string[]> {
  const all = await managementJson<ConnectionInfo[]>(services.managementUrl, 'GET', `vhosts/${encodeURIComponent(vhost)}/connections`);
  return all.filter((c) => c.client_properties?.connection_name?.startsWith('tidemark coordinator coordinator ')).map((c) => c.name);
}

const waitFor = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> =>
  eventually(`${what} (logs in ${cluster.logFile})`, probe, { timeoutMs });

async function publish(count: number): Promise<void> {
  const producer = new RoundRobinProducer(services.amqpUrl, vhost, 'fc', QUEUES.map((q) => q.name), { maxMessages: count });
  producer.start();
  await producer.finished();
}

describe('fence channel kept across rounds', () => {
  beforeAll(async () => {
    setup = await startProtectedVhost({ exchange: 'fc', queues: QUEUES, workers: 1 });
    ({ services, vhost, cluster } = setup);
  });

  afterAll(async () => {
    await setup?.stop();
  });

  it('commits the next checkpoint after the broker closed the connection of the fence channel between rounds', async () => {
    let expected = 0;
    for (let drop = 0; drop < 2; drop += 1) {
      await publish(20);
      expected += 20;
      const before = await cluster.client.checkpoint(true);
      expect(before.outcome, before.reason).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);

      // The fence channel of the round just committed stays open on this connection; close it
      // from the broker's side, as a node restart or an operator would.
      const dropped = await waitFor('the coordinator connection to the vhost to be listed', async () => {
        const names = await coordinatorConnections();
        return names.length > 0 ? names : undefined;
      });
      for (const name of dropped) await managementJson(services.managementUrl, 'DELETE', `connections/${encodeURIComponent(name)}`);
      // The coordinator noticed (it reconnects on close), so its old channel is certainly closed.
      await waitFor('the coordinator to reconnect to the vhost', async () => {
        const names = await coordinatorConnections();
        return names.some((n) => !dropped.includes(n)) ? true : undefined;
      });

      await publish(10);
      expected += 10;
      const after = await cluster.client.checkpoint(true);
      expect(after.outcome, after.reason).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
      const manifest = await cluster.client.getCheckpoint(String(after.epoch));
      expect(manifest.queues.reduce((n, q) => n + q.messages, 0)).toBe(expected);
    }
  }, 120_000);
});
