/**
 * A new leader's recovery (protocol step 4): a round whose COMMIT was recorded but whose manifest
 * never landed (the leader died in between) is finished from the staged partition manifests;
 * a round that was started but never decided is presumed aborted.
 */
import amqp from 'amqplib';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import { checkpointKey, decodeManifest } from '../../services/core/store/keys.js';
import { redisKeys } from '../../services/core/format/names.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { RoundRobinProducer } from '../helpers/producers.js';
import { RestoredQueues, restoreWithPrefix } from '../helpers/verify.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';

const QUEUES = ['l1', 'l2', 'l3'];
let services: TestServices;
let vhost: string;
let namespace: string;
let cluster: TestCluster;
let redis: Redis;

async function publish(count: number): Promise<void> {
  const producer = new RoundRobinProducer(services.amqpUrl, vhost, 'jobs', QUEUES, { maxMessages: count, window: 16 });
  producer.start();
  await producer.finished();
}

describe('leader recovery', () => {
  beforeAll(async () => {
    services = await testServices();
    vhost = uniqueName('tm-recovery');
    namespace = uniqueName('tmr');
    await createTestVhost(services.managementUrl, vhost);
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createChannel();
    await channel.assertExchange('jobs', 'direct', { durable: true });
    for (const [i, q] of QUEUES.entries()) {
      await channel.assertQueue(q, { durable: true, arguments: { 'x-queue-type': ['classic', 'quorum', 'stream'][i] } });
      await channel.bindQueue(q, 'jobs', q);
    }
    await connection.close();
    redis = new Redis(services.redisUrl);
    cluster = await startTestCluster({
      services,
      namespace,
      protect: `${vhost}:l*`,
      store: { kind: 'file' },
      workers: 2,
      extraEnv: { TIDEMARK_LEASE_TIME: '2s', TIDEMARK_DISCOVERY_INTERVAL: '1s' },
    });
    await cluster.waitForStatus((s) => s.protectedQueues === QUEUES.length && s.workers.reduce((n, w) => n + w.queues, 0) === QUEUES.length, 'queues assigned');
  });

  afterAll(async () => {
    await cluster?.stop();
    redis?.disconnect();
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
  });

  it('finishes a committed round whose manifest is missing, and presumes an undecided one aborted', async () => {
    await publish(90);
    expect((await cluster.client.checkpoint(true)).outcome).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
    await publish(60);
    const second = await cluster.client.checkpoint(true);
    expect(second.outcome).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);

    // The leader "dies" after recording COMMIT and before the manifest lands, and a round it had
    // just started is left undecided.
    const manifestFile = join(fileURLToPath(cluster.storeUrl), checkpointKey(second.epoch));
    const original = await decodeManifest(readFileSync(manifestFile), manifestFile);
    await cluster.kill('coordinator');
    rmSync(manifestFile);
    const undecided = second.epoch + 1;
    const keys = redisKeys(namespace);
    await redis.set(keys.epoch, String(undecided));
    await redis.hset(keys.decisions, String(undecided), JSON.stringify({ epoch: undecided, state: 'started', reason: '', leaderToken: 1, atMs: Date.now() }));

    cluster.restart('coordinator');
    await cluster.waitForStatus((s) => s.leader && s.latestCheckpoint === second.epoch, 'a new leader that finished the committed round');
    const recovered = await cluster.client.getCheckpoint(String(second.epoch));
    expect(recovered).toEqual(original);
    expect(JSON.parse((await redis.hget(keys.decisions, String(undecided)))!)).toMatchObject({ state: 'aborted' });

    // Rounds go on above the aborted epoch, and the recovered checkpoint restores exactly.
    await cluster.waitForStatus((s) => s.workers.reduce((n, w) => n + w.queues, 0) === QUEUES.length, 'queues assigned by the new leader');
    await publish(30);
    const third = await cluster.client.checkpoint(true);
    expect(third.reason).toBe('');
    expect(third.epoch).toBeGreaterThan(undecided);
    await restoreWithPrefix(cluster.client, recovered, 'rec.');
    await new RestoredQueues(services.amqpUrl, vhost).expectExactPrefixes(recovered, 'rec.');
  });
});
