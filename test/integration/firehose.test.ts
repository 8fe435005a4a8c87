/**
 * Firehose capture (TIDEMARK_FIREHOSE_VHOSTS): publishes to the default exchange, which no
 * binding sees, are captured through RabbitMQ's tracer and the workers' relay. Checkpoints taken
 * under causal traffic (A_i through the default exchange, confirmed, then B_i through a named
 * exchange) are exact prefixes of what was confirmed and causally consistent, including across a
 * failover of the active relay; a message keeps its properties; and a vhost taken out of the mode
 * drains its firehose queue and goes back to bindings without losing anything.
 */
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManagementClient } from '../../services/core/amqp/management-client.js';
import { firehoseQueueName, relayConsumerTag, relayExchangeName, RELAY_REDELIVERED_HEADER } from '../../services/core/amqp/firehose.js';
import { journalName } from '../../services/core/format/names.js';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import type { CheckpointManifest } from '../../services/gen/tidemark/v1/store.js';
import { declareBoundQueues, type ReadMessage } from '../helpers/broker.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { runCli } from '../helpers/cli.js';
import { CausalProducer } from '../helpers/producers.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';
import { RestoredQueues, restoreWithPrefix } from '../helpers/verify.js';
import { eventually } from '../helpers/eventually.js';
import { assign } from '../../services/core/state/rendezvous.js';
import { queueKey } from '../../services/core/format/queue-key.js';

const EXCHANGE = 'fh';
const QUEUES = [
  { name: 'fh-a', type: 'classic' },
  { name: 'fh-b', type: 'quorum' },
  { name: 'fh-p', type: 'classic' },
] as const;

let services: TestServices;
let management: ManagementClient;
let vhost: string;
let namespace: string;
let cluster: TestCluster;

async function committed(): Promise<CheckpointManifest> {
  const round = await cluster.client.checkpoint(true);
  expect(round.outcome, round.reason).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
  return cluster.client.getCheckpoint(String(round.epoch));
}

/** The causal indices of a restored queue, with copies the relay marked as re-sent left out once seen. */
function indices(name: string, messages: ReadMessage[]): number[] {
  const seen = new Set<number>();
  const out: number[] = [];
  for (const m of messages) {
    const i = Number(m.headers.causal);
    if (seen.has(i)) {
      expect(m.headers[RELAY_REDELIVERED_HEADER], `${name}: a repeated message ${i} must be a marked re-sent copy`).toBe(true);
      continue;
    }
    seen.add(i);
    out.push(i);
  }
  return out;
}

/**
 * Restores `manifest` and checks fh-a and fh-b hold 0..k-1 in order, B only with its A, and at
 * least the `atLeast` pairs confirmed before the checkpoint was asked for.
 */
async function expectExactCausalCut(manifest: CheckpointManifest, atLeast: number): Promise<number> {
  const prefix = `r${manifest.epoch}-`;
  await restoreWithPrefix(cluster.client, manifest, prefix);
  const restored = new RestoredQueues(services.amqpUrl, vhost);
  const a = indices('fh-a', await restored.read(manifest, prefix, 'fh-a'));
  const b = indices('fh-b', await restored.read(manifest, prefix, 'fh-b'));
  expect(a, `checkpoint ${manifest.epoch}: fh-a is an exact prefix`).toEqual([...a.keys()]);
  expect(b, `checkpoint ${manifest.epoch}: fh-b is an exact prefix`).toEqual([...b.keys()]);
  expect(b.length, `checkpoint ${manifest.epoch}: every B_i with its A_i`).toBeLessThanOrEqual(a.length);
  expect(a.length, `checkpoint ${manifest.epoch}: every A_i confirmed before it`).toBeGreaterThanOrEqual(atLeast);
  expect(b.length, `checkpoint ${manifest.epoch}: every B_i confirmed before it`).toBeGreaterThanOrEqual(atLeast);
  await restored.expectCausal(manifest, prefix, 'fh-a', 'fh-b');
  return a.length;
}

/**
 * The worker whose relay the broker feeds (single active consumer), as `tidemark status` shows it,
 * checked against the broker's own consumer list. Who is active shows once the broker's statistics
 * include the consumer (up to 5 s).
 */
async function activeRelay(standbys = 0): Promise<{ active: string; standby: string[] } | undefined> {
  // A worker starts its relay once it holds queues of the vhost: wait for `standbys` of them.
  // Up to 60 s: on a loaded 2-core machine the relays were seen to take over 30 s.
  const relay = await eventually(
    `an active firehose relay with ${standbys} standby(s)`,
    async () => {
      const r = (await cluster.client.status()).firehose.find((f) => f.vhost === vhost);
      return r?.activeWorker && r.standbyWorkers.length >= standbys ? r : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 500 },
  ).catch(() => undefined);
  if (!relay) return undefined;
  const consumers = await management.queueConsumers(vhost, firehoseQueueName(namespace));
  expect(consumers?.consumers.find((c) => c.active)?.tag).toBe(relayConsumerTag(relay.activeWorker));
  return { active: relay.activeWorker, standby: relay.standbyWorkers };
}

describe('firehose capture of default-exchange publishes', () => {
  beforeAll(async () => {
    services = await testServices();
    management = new ManagementClient(services.managementUrl);
    // Owners follow from a hash of the vhost's name: pick one that gives both workers queues of
    // the vhost, so that one relays and the other stands by (1 in 4 random names would not).
    do vhost = uniqueName('tm-fh');
    while ([...assign(QUEUES.map((q) => queueKey(vhost, q.name)), ['worker-1', 'worker-2']).values()].some((owned) => owned.length === 0));
    namespace = uniqueName('tmf');
    await createTestVhost(services.managementUrl, vhost);
    await declareBoundQueues(services.amqpUrl, vhost, EXCHANGE, QUEUES);
    cluster = await startTestCluster({
      services,
      namespace,
      protect: `${vhost}:fh-*`,
      store: { kind: 'file' },
      workers: 2,
      prepareTimeout: '20s',
      extraEnv: { TIDEMARK_DISCOVERY_INTERVAL: '1s', TIDEMARK_LEASE_TIME: '3s' },
      processEnv: { coordinator: { TIDEMARK_FIREHOSE_VHOSTS: vhost } },
    });
    await cluster.waitForStatus((s) => s.protectedQueues === QUEUES.length && s.workers.reduce((n, w) => n + w.queues, 0) === QUEUES.length, 'queues assigned');
  });

  afterAll(async () => {
    await cluster?.stop();
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
  });

  it('sets the vhost up: tracer on, firehose queue, journals fed only by the relay', async () => {
    expect(await management.vhostTracing(vhost)).toBe(true);
    const bindings = await management.listBindings(vhost);
    const journal = journalName(namespace, vhost, 'fh-a');
    const sources = bindings.filter((b) => b.destination === journal && b.source !== '').map((b) => `${b.source} ${b.routingKey}`);
    expect(sources.sort()).toEqual([`${relayExchangeName(namespace)} ${journal}`, `${relayExchangeName(namespace)} ${namespace}.fence`].sort());
    const traceKeys = bindings.filter((b) => b.destination === firehoseQueueName(namespace) && b.source !== '').map((b) => b.routingKey);
    expect(traceKeys.sort()).toEqual(['publish.', `publish.${EXCHANGE}`, `publish.${namespace}.fence`].sort());
  });

  it('captures a default-exchange publish with its properties', async () => {
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createConfirmChannel();
    channel.sendToQueue('fh-p', Buffer.from('with properties'), {
      messageId: 'p-1',
      correlationId: 'c-1',
      contentType: 'text/plain',
      appId: 'firehose-test',
      timestamp: 1_700_000_000,
      priority: 3,
      userId: 'guest',
      headers: { kind: 'direct', n: 7 },
    });
    await channel.waitForConfirms();
    await connection.close();

    const manifest = await committed();
    expect(manifest.queues.find((q) => q.definition!.name === 'fh-p')?.messages).toBe(1);
    await restoreWithPrefix(cluster.client, manifest, 'p-');
    const [got] = await new RestoredQueues(services.amqpUrl, vhost).read(manifest, 'p-', 'fh-p');
    expect(got.body.toString()).toBe('with properties');
    expect(got.properties).toMatchObject({ messageId: 'p-1', correlationId: 'c-1', contentType: 'text/plain', appId: 'firehose-test', timestamp: 1_700_000_000, priority: 3, userId: 'guest' });
    const relayHeaders = Object.keys(got.headers).filter((k) => k.startsWith('x-tidemark-relay'));
    expect(relayHeaders).toEqual([]);
    expect(got.headers).toMatchObject({ kind: 'direct', n: 7 });
  }, 60_000);

  it('checkpoints exact, causally consistent cuts of default-exchange traffic, through a failover of the active relay', async () => {
    const producer = new CausalProducer(services.amqpUrl, vhost, ['', EXCHANGE], 'fh-a', 'fh-b');
    producer.start();
    try {
      await new Promise((r) => setTimeout(r, 1_500));
      // Every pair confirmed before the checkpoint was asked for is in it.
      let confirmed = producer.sent;
      await expectExactCausalCut(await committed(), confirmed);

      const relays = await activeRelay(1);
      expect(relays?.active, 'a worker relays the firehose').toMatch(/^worker-\d$/);
      const relay = relays!.active;
      expect(relays!.standby).toEqual(['worker-1', 'worker-2'].filter((w) => w !== relay));
      const plain = await runCli(['status'], cluster.env);
      expect(plain.stdout).toMatch(new RegExp(`${vhost}\\s+${relay}\\s+worker-\\d\\s+\\d+`));
      await cluster.kill(relay);
      await cluster.waitForStatus((s) => s.workers.length === 1 && s.workers[0].queues === QUEUES.length, 'the survivor holds every queue', 30_000);
      await new Promise((r) => setTimeout(r, 1_000));
      confirmed = producer.sent;
      const during = await expectExactCausalCut(await committed(), confirmed);
      expect((await activeRelay())?.active).not.toBe(relay);

      await producer.stop();
      const final = await expectExactCausalCut(await committed(), producer.sent);
      expect(final, 'after publishing stops, every confirmed message').toBe(producer.sent);
      expect(final).toBeGreaterThan(during);
    } finally {
      await producer.stop();
    }
  }, 150_000);

  it('goes back to bindings when the vhost leaves firehose mode, draining the firehose queue first', async () => {
    await cluster.kill('coordinator');
    cluster.restart('coordinator', {});
    const queue = firehoseQueueName(namespace);
    for (let i = 0; ; i += 1) {
      if (!(await management.listQueues(vhost)).some((q) => q.name === queue)) break;
      expect(i, `${queue} is deleted once empty`).toBeLessThan(60);
      await new Promise((r) => setTimeout(r, 500));
    }
    const journal = journalName(namespace, vhost, 'fh-b');
    const journalBindings = async () =>
      (await management.listBindings(vhost))
        .filter((b) => b.destination === journal && b.source !== '')
        .map((b) => `${b.source} ${b.routingKey}`)
        .sort();
    const bound = [`${EXCHANGE} fh-b`, `${namespace}.fence `].sort();
    // The pass that deletes the firehose queue rebinds the journals right after: give it that pass.
    await eventually('the journal bound like its source again', async () => JSON.stringify(await journalBindings()) === JSON.stringify(bound), { timeoutMs: 15_000 }).catch(() => {});
    expect(await journalBindings()).toEqual(bound);

    // Through the named exchange: captured by bindings again.
    const before = (await committed()).queues.find((q) => q.definition!.name === 'fh-b')!.messages;
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createConfirmChannel();
    for (let i = 0; i < 5; i += 1) channel.publish(EXCHANGE, 'fh-b', Buffer.from(`after ${i}`));
    await channel.waitForConfirms();
    await connection.close();
    const manifest = await committed();
    expect(manifest.queues.find((q) => q.definition!.name === 'fh-b')!.messages).toBe(before + 5);
  }, 90_000);
});
