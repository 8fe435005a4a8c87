/**
 * `npm run demo`: Tidemark end to end on this machine's RabbitMQ and Redis.
 *
 * Starts a local cluster (a coordinator and three workers, separate processes, local-directory
 * store), creates demo queues of every type with live producers, takes checkpoints while they
 * publish, lets consumers take most of the work queues' messages, deletes the queues (the
 * disaster), restores the latest checkpoint, and reconciles every queue against what it held:
 * the messages the broker confirmed to the producers that no consumer took (for a stream, all of
 * them). Exits non-zero on any mismatch and leaves nothing running. `--keep` keeps the demo vhost
 * and store for a look afterwards.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { freePort } from '../helpers/cluster.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import amqp from 'amqplib';
import { ManagementClient } from '../../services/core/amqp/management-client.js';
import { amqpUrlForVhost } from '../../services/core/amqp/vhost-url.js';
import { TidemarkClient, tokenFromEnvironment } from '../../services/client/index.js';
import { loadConfig, loadGrpcTls } from '../../services/core/index.js';
import { ensureLocalCertificates } from '../../services/core/tls/index.js';
import { readQueue } from '../helpers/broker.js';
import { RoundRobinProducer } from '../helpers/producers.js';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../services/cli/main.js', import.meta.url));
const keep = process.argv.includes('--keep');

const AMQP_URL = process.env.TIDEMARK_AMQP_URL ?? 'amqp://guest:guest@localhost:5672';
const MANAGEMENT_URL = process.env.TIDEMARK_MANAGEMENT_URL ?? 'http://guest:guest@localhost:15672';
const REDIS_URL = process.env.TIDEMARK_REDIS_URL ?? 'redis://localhost:6379';
const VHOST = 'tidemark-demo';
const EXCHANGE = 'shop';
const QUEUES = [
  { name: 'orders', type: 'quorum' },
  { name: 'payments', type: 'classic' },
  { name: 'audit-log', type: 'stream' },
  { name: 'emails', type: 'classic' },
  { name: 'shipments', type: 'quorum' },
  { name: 'clickstream', type: 'stream' },
];

const say = (line: string) => process.stdout.write(`${line}\n`);
const step = (line: string) => say(`\n== ${line}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


/** The management plugin is off on a fresh machine: turn it on if this machine can. */
async function ensureManagement(management: ManagementClient): Promise<void> {
  try {
    await management.overview();
    return;
  } catch {
    say('RabbitMQ management API not answering: enabling the rabbitmq_management plugin');
  }
  try {
    await run('rabbitmq-plugins', ['enable', 'rabbitmq_management']);
  } catch (err) {
    throw new Error(`cannot enable the management plugin (${(err as Error).message}); run "rabbitmq-plugins enable rabbitmq_management" and retry`);
  }
  for (let i = 0; i < 60; i += 1) {
    try {
      await management.overview();
      return;
    } catch {
      await sleep(1000);
    }
  }
  throw new Error(`the management API at ${new URL(MANAGEMENT_URL).host} did not come up within 60s`);
}

async function tidemark(env: NodeJS.ProcessEnv, ...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [cli, ...args], { env, maxBuffer: 64 * 1024 * 1024 });
  return stdout.trimEnd();
}

async function main(): Promise<number> {
  const management = new ManagementClient(MANAGEMENT_URL);
  await ensureManagement(management);
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-demo-'));
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TIDEMARK_AMQP_URL: AMQP_URL,
    TIDEMARK_MANAGEMENT_URL: MANAGEMENT_URL,
    TIDEMARK_REDIS_URL: REDIS_URL,
    TIDEMARK_STORE: `file://${join(dir, 'store')}`,
    TIDEMARK_PROTECT: `${VHOST}:*`,
    TIDEMARK_NAMESPACE: `demo-${process.pid}`,
    TIDEMARK_COORDINATOR: `127.0.0.1:${port}`,
    TIDEMARK_INTERVAL: '3s',
    TIDEMARK_DISCOVERY_INTERVAL: '1s',
    TIDEMARK_LOG_LEVEL: 'warn',
    // The cluster's warnings are read by a person here: one readable line each, not JSON.
    TIDEMARK_LOG_FORMAT: process.env.TIDEMARK_LOG_FORMAT ?? 'pretty',
    // The demo's consumers acknowledge in order (docs/HEAD-AT-THE-CUT.md): the head needs no hold bound.
    TIDEMARK_HEAD_MAX_HOLD: '0',
    // Mutual TLS on a local CA, as `cluster up` sets up for a newcomer (docs/SECURITY.md#transport-security).
    TIDEMARK_TLS_DIR: join(dir, 'tls'),
  };
  // Made here rather than by `cluster up` so that the demo's own client can read them at once.
  await ensureLocalCertificates(join(dir, 'tls'));

  step(`demo vhost ${VHOST}: exchange "${EXCHANGE}" and ${QUEUES.length} queues`);
  await management.deleteVhost(VHOST);
  await management.createVhost(VHOST);
  await management.setPermissions(VHOST, new URL(MANAGEMENT_URL).username || 'guest', { configure: '.*', write: '.*', read: '.*' });
  const connection = await amqp.connect(amqpUrlForVhost(AMQP_URL, VHOST));
  const channel = await connection.createChannel();
  await channel.assertExchange(EXCHANGE, 'direct', { durable: true });
  for (const q of QUEUES) {
    await channel.assertQueue(q.name, { durable: true, arguments: { 'x-queue-type': q.type } });
    await channel.bindQueue(q.name, EXCHANGE, q.name);
    say(`  ${q.name.padEnd(12)} ${q.type}`);
  }

  step('tidemark cluster up --workers 3 (a coordinator and three workers, each its own process)');
  const cluster: ChildProcess = spawn(process.execPath, [cli, 'cluster', 'up', '--workers', '3', '--port', String(port)], {
    env,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  // cluster up writes its admin token to .tidemark/admin-token, where the CLI (and this client) find it.
  const tls = loadGrpcTls(loadConfig({ env }), 'client');
  let client = new TidemarkClient(`127.0.0.1:${port}`, { tls });
  let failed = true;
  try {
    for (let i = 0; ; i += 1) {
      const token = (() => {
        try {
          return tokenFromEnvironment(env);
        } catch {
          return undefined;
        }
      })();
      if (token && i % 4 === 0) {
        client.close();
        client = new TidemarkClient(`127.0.0.1:${port}`, { tls, token });
      }
      const status = await client.status().catch(() => undefined);
      const assigned = status?.workers.reduce((n, w) => n + w.queues, 0) ?? 0;
      if (status?.leader && status.workers.length === 3 && status.protectedQueues === QUEUES.length && assigned === QUEUES.length) break;
      if (i > 120) throw new Error('the cluster did not come up within 60s');
      await sleep(500);
    }
    say(await tidemark(env, 'status'));

    step('live producers publish to every queue (publisher confirms on)');
    const producer = new RoundRobinProducer(AMQP_URL, VHOST, EXCHANGE, QUEUES.map((q) => q.name), { window: 32 });
    producer.start();
    for (let i = 0; i < 3; i += 1) {
      await sleep(1500);
      say(`  ${producer.total()} confirmed so far; ${await tidemark(env, 'checkpoint', '--wait')}`);
    }
    await producer.stop();
    say(`  producers stopped: ${producer.total()} messages confirmed by the broker`);

    step('consumers take two thirds of every work queue (a stream keeps its messages for every reader)');
    const consumed = new Map<string, number>();
    for (const q of QUEUES.filter((q) => q.type !== 'stream')) {
      const take = Math.floor((producer.confirmed.get(q.name)!.length * 2) / 3);
      for (let i = 0; i < take; i += 1) {
        if (!(await channel.get(q.name, { noAck: true }))) break;
        consumed.set(q.name, (consumed.get(q.name) ?? 0) + 1);
      }
      say(`  ${q.name.padEnd(12)} ${consumed.get(q.name) ?? 0} consumed`);
    }
    say(`  ${await tidemark(env, 'checkpoint', '--wait')}`);
    say(await tidemark(env, 'checkpoints', 'list'));
    say(await tidemark(env, 'checkpoints', 'show', 'latest'));

    step('disaster: every demo queue is deleted');
    for (const q of QUEUES) {
      await channel.deleteQueue(q.name);
      say(`  deleted ${q.name}`);
    }
    await connection.close();

    step('tidemark restore --checkpoint latest');
    say(await tidemark(env, 'restore', '--checkpoint', 'latest'));

    step('reconciliation: each restored queue against what it held (confirmed by the broker, not consumed)');
    let mismatches = 0;
    let resent = 0;
    let skipped = 0;
    const rows = [['QUEUE', 'TYPE', 'PUBLISHED', 'CONSUMED', 'HELD', 'RESTORED', 'MARKED', 'RESULT']];
    for (const q of QUEUES) {
      const published = producer.confirmed.get(q.name)!.map((m) => m.messageId);
      const taken = consumed.get(q.name) ?? 0;
      const held = published.slice(taken);
      const messages = await readQueue(AMQP_URL, VHOST, q.name, q.type, held.length);
      const restored = messages.map((m) => String(m.properties.messageId));
      // A contents restore may start a little early: the margin it marks x-tidemark-possibly-acked.
      const marked = messages.filter((m) => m.headers['x-tidemark-possibly-acked'] === true).length;
      const early = restored.length - held.length;
      const exact =
        early >= 0 &&
        early <= marked &&
        restored.slice(early).every((id, i) => id === held[i]) &&
        restored.slice(0, early).every((id, i) => id === published[taken - early + i]);
      if (!exact) mismatches += 1;
      resent += restored.length;
      skipped += published.length - restored.length;
      rows.push([q.name, q.type, String(published.length), String(taken), String(held.length), String(restored.length), String(marked), exact ? 'ok' : 'MISMATCH']);
    }
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    for (const r of rows) say(`  ${r.map((c, i) => c.padEnd(widths[i])).join('  ')}`);
    say('  MARKED: restored messages carrying x-tidemark-possibly-acked (the head\'s margin: they may have been consumed already)');
    if (mismatches > 0) {
      say(`\nFAILED: ${mismatches} queue(s) do not match`);
      return 1;
    }
    say(
      `\nOK: all ${QUEUES.length} queues restored what they held, in order: ${resent} messages re-sent, ` +
        `${skipped} consumed before the disaster not re-sent (restore --history would re-send all ${producer.total()})`,
    );
    failed = false;
    return 0;
  } finally {
    client.close();
    await new Promise<void>((resolve) => {
      if (cluster.exitCode !== null) return resolve();
      cluster.once('exit', () => resolve());
      cluster.kill('SIGTERM');
    });
    if (!keep) {
      await management.deleteVhost(VHOST).catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    } else {
      say(`kept vhost ${VHOST} and store ${dir}${failed ? ' for inspection' : ''}`);
    }
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`demo failed: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
