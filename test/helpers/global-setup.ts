/**
 * vitest globalSetup: finds or starts the services every test file shares, once per run, and
 * hands them to tests through `provide` (read them with testServices() from ./services.js).
 * Whatever it starts (containers, the s3rver child process) it stops at teardown.
 *
 * Order per service: TIDEMARK_TEST_* environment URLs, else a container when a Docker engine is
 * reachable (unless TIDEMARK_TEST_CONTAINERS=false), else this machine's services plus an s3rver.
 *
 * At teardown it checks that a broker it did not start (this machine's, or one the environment
 * named) is still healthy (broker-health.ts) and fails the run if not: tests share that broker
 * with whoever comes next, and a RabbitMQ 3.10 node pushed past its open-file limit stays broken
 * until restarted. A container's broker is not checked: it is being stopped anyway.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { brokerHealthProblems } from './broker-health.js';
import type { TestS3, TestServices } from './services.js';

/** Images used when the services run in containers. */
const IMAGES = {
  rabbitmq: 'rabbitmq:3.13-management',
  redis: 'redis:7.4-alpine',
  minio: 'minio/minio:RELEASE.2024-12-13T22-19-12Z',
};

const LOCAL = {
  amqpUrl: 'amqp://guest:guest@localhost:5672',
  managementUrl: 'http://guest:guest@localhost:15672',
  redisUrl: 'redis://localhost:6379',
};

/** s3rver accepts only its built-in account. */
const S3RVER_KEY = 'S3RVER';

type Stop = () => Promise<void>;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const stops: Stop[] = [];
  const teardown = async () => {
    for (const stop of stops.reverse()) {
      await stop().catch((err: unknown) => console.error('test services teardown:', err));
    }
  };
  try {
    const { services, brokerStarted } = await resolveServices(process.env, stops);
    project.provide('tidemarkServices', services);
    if (brokerStarted) return teardown;
    return async () => {
      const problems = await brokerHealthProblems(services.managementUrl).catch((err: unknown) => [String(err)]);
      await teardown();
      if (problems.length > 0) {
        // vitest only logs an error thrown here ("error during close") and still exits 0.
        process.exitCode = 1;
        throw new Error(
          `the broker at ${new URL(services.managementUrl).host} is not healthy after the tests: ${problems.join('; ')}. ` +
            'A test left it broken or exhausted; later runs and other users of this broker will fail until it is fixed (for emfile: restart RabbitMQ).',
        );
      }
    };
  } catch (err) {
    await teardown();
    throw err;
  }
}

/** The services, and whether the broker is a container this run started (and will stop). */
async function resolveServices(env: NodeJS.ProcessEnv, stops: Stop[]): Promise<{ services: TestServices; brokerStarted: boolean }> {
  const fromEnv = servicesFromEnv(env);
  const needRabbit = fromEnv.amqpUrl === undefined;
  const needRedis = fromEnv.redisUrl === undefined;
  const needS3 = fromEnv.s3 === undefined;
  let started: Partial<TestServices> = {};
  if ((needRabbit || needRedis || needS3) && env.TIDEMARK_TEST_CONTAINERS !== 'false' && (await dockerReachable())) {
    started = await startContainers({ rabbitmq: needRabbit, redis: needRedis, minio: needS3 }, stops);
  }
  const services = {
    amqpUrl: fromEnv.amqpUrl ?? started.amqpUrl ?? LOCAL.amqpUrl,
    managementUrl: fromEnv.managementUrl ?? started.managementUrl ?? LOCAL.managementUrl,
    redisUrl: fromEnv.redisUrl ?? started.redisUrl ?? LOCAL.redisUrl,
    s3: fromEnv.s3 ?? started.s3 ?? (await startS3rver(stops)),
  };
  return { services, brokerStarted: started.amqpUrl !== undefined };
}

function servicesFromEnv(env: NodeJS.ProcessEnv): Partial<TestServices> {
  const value = (name: string) => (env[name] === '' ? undefined : env[name]);
  const amqpUrl = value('TIDEMARK_TEST_AMQP_URL');
  const managementUrl = value('TIDEMARK_TEST_MANAGEMENT_URL');
  // The two must name the same broker, so they come from the same place.
  if ((amqpUrl === undefined) !== (managementUrl === undefined)) {
    throw new Error('set both TIDEMARK_TEST_AMQP_URL and TIDEMARK_TEST_MANAGEMENT_URL (they must point at the same broker), or neither');
  }
  let s3: TestS3 | undefined;
  const endpoint = value('TIDEMARK_TEST_S3_ENDPOINT');
  if (endpoint !== undefined) {
    const accessKey = value('TIDEMARK_TEST_S3_ACCESS_KEY');
    const secretKey = value('TIDEMARK_TEST_S3_SECRET_KEY');
    if (accessKey === undefined || secretKey === undefined) {
      throw new Error('TIDEMARK_TEST_S3_ENDPOINT is set: set TIDEMARK_TEST_S3_ACCESS_KEY and TIDEMARK_TEST_S3_SECRET_KEY too');
    }
    s3 = { endpoint, accessKey, secretKey, region: value('TIDEMARK_TEST_S3_REGION') ?? 'us-east-1' };
  }
  return { amqpUrl, managementUrl, redisUrl: value('TIDEMARK_TEST_REDIS_URL'), s3 };
}

async function dockerReachable(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient();
    return true;
  } catch {
    return false;
  }
}

async function startContainers(
  wanted: { rabbitmq: boolean; redis: boolean; minio: boolean },
  stops: Stop[],
): Promise<Partial<TestServices>> {
  const [{ RabbitMQContainer }, { RedisContainer }, { MinioContainer }] = await Promise.all([
    import('@testcontainers/rabbitmq'),
    import('@testcontainers/redis'),
    import('@testcontainers/minio'),
  ]);
  const result: Partial<TestServices> = {};
  const starts: Promise<void>[] = [];
  if (wanted.rabbitmq) {
    starts.push(
      new RabbitMQContainer(IMAGES.rabbitmq)
        // Every journal is a stream holding at least two files open.
        .withUlimits({ nofile: { soft: 65536, hard: 65536 } })
        .withStartupTimeout(180_000)
        .start()
        .then((container) => {
          stops.push(async () => void (await container.stop()));
          const host = container.getHost();
          result.amqpUrl = `amqp://guest:guest@${host}:${container.getMappedPort(5672)}`;
          result.managementUrl = `http://guest:guest@${host}:${container.getMappedPort(15672)}`;
        }),
    );
  }
  if (wanted.redis) {
    starts.push(
      new RedisContainer(IMAGES.redis).start().then((container) => {
        stops.push(async () => void (await container.stop()));
        result.redisUrl = container.getConnectionUrl();
      }),
    );
  }
  if (wanted.minio) {
    starts.push(
      new MinioContainer(IMAGES.minio)
        .withStartupTimeout(180_000)
        .start()
        .then((container) => {
          stops.push(async () => void (await container.stop()));
          result.s3 = {
            endpoint: container.getConnectionUrl(),
            accessKey: container.getUsername(),
            secretKey: container.getPassword(),
            region: 'us-east-1',
          };
        }),
    );
  }
  // allSettled, so that a container that did start is registered for teardown even when
  // another one failed.
  const failed = (await Promise.allSettled(starts)).find((outcome) => outcome.status === 'rejected');
  if (failed) throw failed.reason;
  return result;
}

/** Runs s3rver-main.mjs in a child process on a free port with a fresh directory. */
async function startS3rver(stops: Stop[]): Promise<TestS3> {
  const directory = await mkdtemp(join(tmpdir(), 'tidemark-s3rver-'));
  stops.push(() => rm(directory, { recursive: true, force: true }));
  const script = fileURLToPath(new URL('./s3rver-main.mjs', import.meta.url));
  // The IPC channel lets the child notice when this process dies without a teardown.
  const child = spawn(process.execPath, [script, directory], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  stops.push(() => stopChild(child));
  const port = await readPort(child);
  const endpoint = `http://127.0.0.1:${port}`;
  await waitUntilAnswering(endpoint, 15_000);
  return { endpoint, accessKey: S3RVER_KEY, secretKey: S3RVER_KEY, region: 'us-east-1' };
}

function readPort(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => fail(new Error('s3rver did not report its port within 15s')), 15_000);
    const onExit = (code: number | null, signal: string | null) =>
      fail(new Error(`s3rver exited before listening (code ${code}, signal ${signal})`));
    function fail(err: Error) {
      clearTimeout(timer);
      child.off('exit', onExit);
      lines.close();
      reject(err);
    }
    child.once('exit', onExit);
    child.once('error', (err) => fail(err));
    lines.once('line', (line) => {
      clearTimeout(timer);
      child.off('exit', onExit);
      lines.close();
      // Keep draining, so nothing the child prints later can block it on a full pipe.
      child.stdout?.resume();
      try {
        const { port } = JSON.parse(line) as { port: number };
        resolve(port);
      } catch (err) {
        reject(new Error(`s3rver printed ${JSON.stringify(line)} instead of its port`, { cause: err }));
      }
    });
  });
}

async function waitUntilAnswering(endpoint: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      // Any HTTP answer (an anonymous request gets an S3 error document) means it serves.
      const response = await fetch(endpoint, { signal: AbortSignal.timeout(2_000) });
      await response.body?.cancel();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`s3rver at ${endpoint} did not answer within ${timeoutMs}ms`, { cause: err });
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}
