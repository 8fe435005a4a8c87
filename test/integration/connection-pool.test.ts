/**
 * The worker's connection pool: a worker spreads its capture channels over as many connections
 * per vhost as `channelsPerConnection` requires (RabbitMQ caps one connection at channel_max), and
 * a connection the broker closes comes back with its captures, losing nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkerClient } from '../../services/core/grpc/worker-client.js';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import type { CheckpointManifest } from '../../services/gen/tidemark/v1/store.js';
import { declareBoundQueues } from '../helpers/broker.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { RoundRobinProducer } from '../helpers/producers.js';
import { createTestVhost, deleteTestVhost, managementJson, testServices, uniqueName, type TestServices } from '../helpers/services.js';
import { RestoredQueues, restoreWithPrefix } from '../helpers/verify.js';

const PER_CONNECTION = 4;
const TYPES = ['classic', 'quorum', 'stream'] as const;
const QUEUES = Array.from({ length: 10 }, (_, i) => ({ name: `cp${String(i).padStart(2, '0')}`, type: TYPES[i % 3] }));

let services: TestServices;
let vhost: string;
let cluster: TestCluster;
/** Every producer of this file, in order: the checkpoints hold all they confirmed. */
const producers: RoundRobinProducer[] = [];

function produce(options: { window?: number; maxMessages?: number; pauseMs?: number }): RoundRobinProducer {
  const producer = new RoundRobinProducer(services.amqpUrl, vhost, 'pool', QUEUES.map((q) => q.name), options);
  producers.push(producer);
  producer.start();
  return producer;
}

interface BrokerConnection {
  /** The broker's name for it, which DELETE /api/connections/<name> takes. */
  name: string;
  /** The connection_name the client gave. */
  user_provided_name?: string;
  /** Open channels, as of the broker's last statistics emission. */
  channels?: number;
}

/** worker-1's capture connections to the test vhost, by the lane its name carries (0, 1, 2, ...). */
async function captureConnections(): Promise<Map<number, BrokerConnection>> {
  const connections = await managementJson<BrokerConnection[]>(services.managementUrl, 'GET', `vhosts/${encodeURIComponent(vhost)}/connections?columns=name,user_provided_name,channels`);
  const lane0 = `tidemark worker worker-1 ${vhost}`;
  const byLane = new Map<number, BrokerConnection>();
  for (const c of connections) {
    if (c.user_provided_name === lane0) byLane.set(0, c);
    else if (c.user_provided_name?.startsWith(`${lane0} #`)) byLane.set(Number(c.user_provided_name.slice(lane0.length + 2)), c);
  }
  return byLane;
}

/** Polls until the worker's capture connections satisfy `predicate`; returns them. */
async function waitForConnections(predicate: (byLane: Map<number, BrokerConnection>) => boolean, what: string, timeoutMs = 30_000): Promise<Map<number, BrokerConnection>> {
  const until = Date.now() + timeoutMs;
  let last = new Map<number, BrokerConnection>();
  while (Date.now() < until) {
    last = await captureConnections();
    if (predicate(last)) return last;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`timed out waiting for ${what}; connections: ${JSON.stringify([...last])}; logs in ${cluster.logFile}`);
}

/** Each lane with its full share of the 10 channels (the statistics lag by up to 5 s). */
const spreadOverThree = (byLane: Map<number, BrokerConnection>) => byLane.size === 3 && [0, 1, 2].map((lane) => byLane.get(lane)?.channels).join() === '4,4,2';

async function committedCheckpoint(): Promise<CheckpointManifest> {
  const round = await cluster.client.checkpoint(true);
  expect(round.outcome, `round ${round.epoch}: ${round.reason}`).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
  return cluster.client.getCheckpoint(String(round.epoch));
}

/** Every confirmed message is in the checkpoint, queue by queue, and a restore gives back exactly the journal's prefix. */
async function expectExact(manifest: CheckpointManifest, prefix: string): Promise<void> {
  expect(manifest.queues).toHaveLength(QUEUES.length);
  for (const entry of manifest.queues) {
    const name = entry.definition!.name;
    const confirmed = producers.reduce((n, p) => n + (p.confirmed.get(name)?.length ?? 0), 0);
    expect(entry.messages, `${name}: messages in checkpoint ${manifest.epoch}`).toBe(confirmed);
  }
  await restoreWithPrefix(cluster.client, manifest, prefix);
  await new RestoredQueues(services.amqpUrl, vhost).expectExactPrefixes(manifest, prefix);
}

async function captureErrors(): Promise<string[]> {
  const worker = (await cluster.client.status()).workers.find((w) => w.workerId === 'worker-1')!;
  const client = new WorkerClient(worker.address, { workerId: worker.workerId, tls: cluster.workerTls });
  try {
    return (await client.status(5_000)).queues.filter((q) => q.error !== '').map((q) => `${q.queue}: ${q.error}`);
  } finally {
    client.close();
  }
}

describe('a worker pool of connections per vhost', () => {
  beforeAll(async () => {
    services = await testServices();
    vhost = uniqueName('tm-pool');
    await createTestVhost(services.managementUrl, vhost);
    await declareBoundQueues(services.amqpUrl, vhost, 'pool', QUEUES);
    cluster = await startTestCluster({
      services,
      namespace: uniqueName('tmp'),
      protect: `${vhost}:cp*`,
      store: { kind: 'file' },
      workers: 1,
      extraEnv: { TIDEMARK_DISCOVERY_INTERVAL: '1s', TIDEMARK_CHANNELS_PER_CONNECTION: String(PER_CONNECTION) },
    });
    await cluster.waitForStatus((s) => s.protectedQueues === QUEUES.length && s.workers.reduce((n, w) => n + w.queues, 0) === QUEUES.length, 'ten queues assigned');
  }, 120_000);

  afterAll(async () => {
    await cluster?.stop();
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
  });

  it('captures 10 queues over ceil(10 / 4) = 3 connections of at most 4 channels, and checkpoints exactly', async () => {
    const byLane = await waitForConnections(spreadOverThree, 'three capture connections holding 4, 4 and 2 channels');
    expect([...byLane.keys()].sort()).toEqual([0, 1, 2]);

    await produce({ maxMessages: 300 }).finished();
    const manifest = await committedCheckpoint();
    expect(manifest.messages).toBe(300);
    await expectExact(manifest, 'p1.');
  }, 120_000);

  it('keeps capturing when the broker closes one pooled connection; the next checkpoint is exact', async () => {
    const before = await waitForConnections(spreadOverThree, 'three capture connections');
    await produce({ maxMessages: 300 }).finished();

    // Traffic keeps flowing while the lane is down and while it comes back.
    const during = produce({ window: 10, pauseMs: 50 });
    try {
      await managementJson(services.managementUrl, 'DELETE', `connections/${encodeURIComponent(before.get(1)!.name)}`);
      const after = await waitForConnections(
        (byLane) => spreadOverThree(byLane) && byLane.get(1)!.name !== before.get(1)!.name,
        'connection #1 reopened with its 4 channels',
      );
      // Only the closed lane reconnected: the others kept their connections.
      expect(after.get(0)!.name).toBe(before.get(0)!.name);
      expect(after.get(2)!.name).toBe(before.get(2)!.name);
      await new Promise((r) => setTimeout(r, 1_000));
    } finally {
      await during.stop();
    }
    expect(await captureErrors()).toEqual([]);

    const manifest = await committedCheckpoint();
    expect(during.total()).toBeGreaterThan(0);
    expect(manifest.messages).toBe(producers.reduce((n, p) => n + p.total(), 0));
    await expectExact(manifest, 'p2.');
  }, 180_000);
});
