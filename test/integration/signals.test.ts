/**
 * Stopping services: SIGINT/SIGTERM at any moment of a coordinator's or a worker's life (starting,
 * capturing or leading, mid-round, mid-restore) stops it within the documented bound (10 s, see
 * docs/OPERATIONS.md#stopping-services), with exit code 0 and a "stopped after" log line, and
 * leaves no connection of it on the broker.
 *
 * Startup is made slow deterministically: Redis is a TCP port that accepts and never answers,
 * and the signal is sent once the process is connected to it. Mid-round and mid-restore use
 * failpoints (a stall in PREPARE or after the fence) and a rate-limited restore.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoundOutcome, type RestoreEvent } from '../../services/client/index.js';
import { spawnCli } from '../helpers/cli.js';
import { freePort } from '../helpers/cluster.js';
import { startProtectedVhost, type ProtectedVhost } from '../helpers/protected-vhost.js';
import { RoundRobinProducer } from '../helpers/producers.js';
import { managementJson, uniqueName } from '../helpers/services.js';
import { eventually } from '../helpers/eventually.js';
import { clusterLogEvents, logEntries } from '../helpers/log-lines.js';

/** The stop bound of runService (services/cli/commands/services.ts), as documented. */
const STOP_LIMIT_MS = 10_000;
const BIG = 'sig-big';
const MESSAGES = 4_000;

let setup: ProtectedVhost;

/** A TCP server that accepts connections and never answers: a Redis that hangs a startup. */
async function blackHole(): Promise<{ port: number; connected: () => Promise<void>; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  let onConnection: (() => void) | undefined;
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    onConnection?.();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    connected: () => new Promise<void>((resolve) => (sockets.size > 0 ? resolve() : (onConnection = resolve))),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Names of the broker connections in the test vhost whose client name starts with `prefix`. */
async function connections(prefix: string): Promise<string[]> {
  const list = await managementJson<Array<{ user_provided_name?: string }>>(
    setup.services.managementUrl,
    'GET',
    `vhosts/${encodeURIComponent(setup.vhost)}/connections?columns=user_provided_name`,
  );
  return list.map((c) => c.user_provided_name ?? '').filter((name) => name.startsWith(prefix));
}

/** Waits until the broker lists a connection named `prefix...` (it lists new ones within about 5 s). */
async function someConnection(prefix: string): Promise<void> {
  await until(async () => (await connections(prefix)).length > 0, `a connection named "${prefix}..."`, 15_000);
}

/** Waits (the management API lags a little) until no connection named `prefix...` is left. */
async function noConnections(prefix: string): Promise<void> {
  const until = Date.now() + 10_000;
  let left = await connections(prefix);
  while (left.length > 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 250));
    left = await connections(prefix);
  }
  expect(left, `connections left by ${prefix}`).toEqual([]);
}

const until = async (condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> => {
  await eventually(`${what} (logs in ${setup.cluster.logFile})`, condition, { timeoutMs, intervalMs: 100 });
};

/** Lines of the cluster log written by the named process. */
const logLines = (name: string, msg: string, fields: Record<string, unknown> = {}) =>
  clusterLogEvents(setup.cluster.logFile, msg, name).filter((e) => Object.entries(fields).every(([key, value]) => e[key] === value));

/**
 * Signals a cluster process and asserts that it stops within the bound, exits 0, says so in its
 * log, and that the broker shows none of its connections afterwards.
 */
async function stopsCleanly(name: string, signal: NodeJS.Signals, connectionPrefix: string): Promise<void> {
  const said = logLines(name, 'stopped', { signal }).length;
  const sentAt = Date.now();
  setup.cluster.signal(name, signal);
  const code = await setup.cluster.exited(name, STOP_LIMIT_MS + 5_000);
  const tookMs = Date.now() - sentAt;
  expect(code, `exit of ${name}; logs in ${setup.cluster.logFile}`).toBe(0);
  expect(tookMs).toBeLessThan(STOP_LIMIT_MS);
  expect(logLines(name, 'stopped', { signal }).length).toBe(said + 1);
  await noConnections(connectionPrefix);
}

const workerConnections = () => `tidemark worker worker-1 ${setup.vhost}`;
const coordinatorConnections = () => `tidemark coordinator coordinator ${setup.vhost}`;

/** Waits until a (restarted) leader has the queues assigned to the worker again. */
const assigned = () => setup.cluster.waitForStatus((s) => s.leader && s.workers.some((w) => w.queues === 2), 'both queues assigned');

/** Starts a rate-limited restore of the big queue; resolves once it has confirmed some messages. */
async function slowRestore(prefix: string): Promise<{ id: string; events: RestoreEvent[]; watching: Promise<void> }> {
  const events: RestoreEvent[] = [];
  let id = '';
  const controller = new AbortController();
  const watching = (async () => {
    try {
      for await (const event of setup.cluster.client.restore({ checkpoint: 'latest', queues: [BIG], prefix, rateLimit: 400 }, controller.signal)) {
        events.push(event);
        if (event.event?.$case === 'plan') id = event.event.value.restoreId;
      }
    } catch {
      // The process under the restore is stopped.
    }
  })();
  await until(() => events.some((e) => e.event?.$case === 'progress' && e.event.value.confirmed > 100), 'the restore to confirm some messages');
  return { id, events, watching: Promise.race([watching, new Promise<void>((r) => setTimeout(r, 15_000))]).finally(() => controller.abort()) };
}

beforeAll(async () => {
  setup = await startProtectedVhost({
    exchange: 'sig',
    queues: [
      { name: BIG, type: 'classic' },
      { name: 'sig-small', type: 'quorum' },
    ],
    workers: 1,
  });
  const producer = new RoundRobinProducer(setup.services.amqpUrl, setup.vhost, 'sig', [BIG, BIG, BIG, 'sig-small'], { maxMessages: MESSAGES, window: 256 });
  producer.start();
  await producer.finished();
  const round = await setup.cluster.client.checkpoint(true);
  expect(round.outcome).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);
});

afterAll(async () => {
  await setup?.stop();
});

describe('a service stopped while it starts', () => {
  for (const [service, signal] of [
    ['worker', 'SIGTERM'],
    ['worker', 'SIGINT'],
    ['coordinator', 'SIGTERM'],
  ] as const) {
    it(`a ${service} waiting for a Redis that does not answer stops on ${signal} within the bound and exits 0`, async () => {
      const redis = await blackHole();
      try {
        const env = { ...setup.cluster.env, TIDEMARK_REDIS_URL: `redis://127.0.0.1:${redis.port}`, TIDEMARK_ID: uniqueName(`sig-${service}`) };
        const { child, result } = spawnCli([service, '--listen', '127.0.0.1:0'], env);
        await redis.connected();
        // Connected is not yet stuck: give the process a moment inside its connect.
        await new Promise((r) => setTimeout(r, 300));
        const sentAt = Date.now();
        child.kill(signal);
        const exited = await Promise.race([result, new Promise<undefined>((r) => setTimeout(() => r(undefined), STOP_LIMIT_MS + 5_000))]);
        if (!exited) child.kill('SIGKILL');
        expect(exited, `the ${service} did not exit`).toBeDefined();
        expect(exited!.code, exited!.stderr).toBe(0);
        expect(Date.now() - sentAt).toBeLessThan(STOP_LIMIT_MS);
        expect(logEntries(exited!.stderr), exited!.stderr).toContainEqual(expect.objectContaining({ msg: 'stopped while starting', signal }));
      } finally {
        await redis.close();
      }
    });
  }
});

describe('a service whose store is not ready', () => {
  it('keeps trying an S3 store that does not answer instead of exiting, and stops on SIGTERM within the bound', async () => {
    const port = await freePort();
    const env = {
      ...setup.cluster.env,
      TIDEMARK_STORE: 's3://tm-sig-store/p',
      TIDEMARK_S3_ENDPOINT: `http://127.0.0.1:${port}`,
      TIDEMARK_S3_ACCESS_KEY: 'key',
      TIDEMARK_S3_SECRET_KEY: 'secret',
      TIDEMARK_ID: uniqueName('sig-store'),
    };
    const { child, result } = spawnCli(['worker', '--listen', '127.0.0.1:0'], env);
    // Several attempts (200, 400, 800 ms ...) and still running.
    await new Promise((r) => setTimeout(r, 3_000));
    expect(child.exitCode, 'the worker exited instead of waiting for its store').toBeNull();
    const sentAt = Date.now();
    child.kill('SIGTERM');
    const exited = await Promise.race([result, new Promise<undefined>((r) => setTimeout(() => r(undefined), STOP_LIMIT_MS + 5_000))]);
    if (!exited) child.kill('SIGKILL');
    expect(exited, 'the worker did not exit').toBeDefined();
    expect(exited!.code, exited!.stderr).toBe(0);
    expect(Date.now() - sentAt).toBeLessThan(STOP_LIMIT_MS);
    const logged = logEntries(exited!.stderr);
    expect(logged, exited!.stderr).toContainEqual(expect.objectContaining({ msg: 'store not ready; retrying', level: 'warn', retryMs: expect.any(Number) }));
    expect(logged, exited!.stderr).toContainEqual(expect.objectContaining({ msg: 'stopped while starting', signal: 'SIGTERM' }));
  });
});

describe('a running service', () => {
  it('a worker stopped mid-restore exits 0 within the bound and leaves no capture or restore connection', async () => {
    await someConnection(workerConnections());
    const { id, watching } = await slowRestore('r1.');
    await someConnection(`tidemark restore ${id}`);
    await stopsCleanly('worker-1', 'SIGTERM', workerConnections());
    await noConnections(`tidemark restore ${id}`);
    await setup.cluster.client.cancelRestore(id).catch(() => {});
    await watching;
    // Back with a failpoint for the mid-round case: its first PREPARE stalls after the segments.
    setup.cluster.restart('worker-1', { TIDEMARK_FAILPOINTS: 'worker.after-segments=stall:30s' });
    await assigned();
  });

  it('a leading coordinator stopped mid-restore exits 0 within the bound; the worker ends the restore task', async () => {
    const { id, events, watching } = await slowRestore('r2.');
    await someConnection(coordinatorConnections());
    await someConnection(`tidemark restore ${id}`);
    await stopsCleanly('coordinator', 'SIGTERM', coordinatorConnections());
    // The leader's stop cancels its calls: the worker closes the restore's connection.
    await noConnections(`tidemark restore ${id}`);
    await watching;
    // Handed over, not ended: the watcher hears no 'done' (the CLI reconnects to the next leader).
    expect(events.some((e) => e.event?.$case === 'done')).toBe(false);
    // Back with a failpoint for the mid-round case: its second round stalls after the fence.
    setup.cluster.restart('coordinator', { TIDEMARK_FAILPOINTS: 'coordinator.after-fence=stall:30s@2' });
    await assigned();
    // It resumes the restore it finds interrupted: cancel that (it may take a moment to show).
    await until(async () => (await setup.cluster.client.cancelRestore(id).catch(() => '')) !== '', 'the resumed restore to be cancelled').catch(() => {});
  });

  it('a worker stopped mid-prepare (stalled in a round) exits 0 within the bound', async () => {
    const fired = logLines('worker-1', 'failpoint fired', { failpoint: 'worker.after-segments' }).length;
    const round = setup.cluster.client.checkpoint(true).catch((err: unknown) => err);
    await until(() => logLines('worker-1', 'failpoint fired', { failpoint: 'worker.after-segments' }).length > fired, 'the worker to stall in PREPARE');
    await stopsCleanly('worker-1', 'SIGTERM', workerConnections());
    await round;
    setup.cluster.restart('worker-1', {});
    await assigned();
  });

  it('a leader stopped mid-round (stalled after the fence) exits 0 within the bound', async () => {
    const round = setup.cluster.client.checkpoint(true).catch((err: unknown) => err);
    await until(() => logLines('coordinator', 'failpoint fired', { failpoint: 'coordinator.after-fence' }).length > 0, 'the leader to stall after the fence');
    await stopsCleanly('coordinator', 'SIGTERM', coordinatorConnections());
    await round;
    setup.cluster.restart('coordinator', {});
    await assigned();
  });

  it('a capturing worker and an idle leader stop on SIGINT within the bound', async () => {
    await someConnection(workerConnections());
    await someConnection(coordinatorConnections());
    await stopsCleanly('worker-1', 'SIGINT', workerConnections());
    await stopsCleanly('coordinator', 'SIGINT', coordinatorConnections());
  });
});
