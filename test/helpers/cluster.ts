/**
 * Runs a real Tidemark cluster for integration tests: a coordinator and workers, each its own
 * process running the built CLI (dist/, made by `npm run build`, which `npm test` runs first).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TidemarkClient } from '../../services/client/index.js';
import { generateToken, type GrpcTls, loadConfig, loadGrpcTls, type Role, tokenLine } from '../../services/core/index.js';
import { testTlsDir } from './tls.js';
import type { StatusReply } from '../../services/gen/tidemark/v1/admin.js';
import type { TestServices } from './services.js';
import { repositoryRoot } from './repo.js';
import { eventually } from './eventually.js';

const cli = join(repositoryRoot(), 'dist', 'services', 'cli', 'main.js');

export interface TestClusterOptions {
  services: TestServices;
  namespace: string;
  protect: string;
  /** 's3' uses the run's S3 server (bucket `bucket`), 'file' a fresh temp directory. */
  store: { kind: 's3'; bucket: string } | { kind: 'file' };
  workers: number;
  /** Scheduled round interval; '0' (the default) leaves rounds to the test. */
  interval?: string;
  prepareTimeout?: string;
  extraEnv?: Record<string, string>;
  /** Coordinators to run: 'coordinator', then 'coordinator-2', ... (standbys). @default 1 */
  coordinators?: number;
  /** Environment of one process only, by name ('worker-1', 'coordinator-2', ...). */
  processEnv?: Record<string, Record<string, string>>;
  /** Extra command-line arguments of one process only (e.g. a worker's --listen / --advertise). */
  processArgs?: Record<string, string[]>;
  /**
   * Mutual TLS on the run's test CA (helpers/tls.ts), as an operator gets by default; false, the
   * processes speak plaintext (TIDEMARK_TLS=off). @default true
   */
  tls?: boolean;
  /** More admin API callers besides the cluster's own admin token: [role, name, token]. */
  extraTokens?: Array<[Role, string, string]>;
  /**
   * Every coordinator and worker serves Prometheus metrics on a loopback port of its own
   * (TIDEMARK_METRICS_LISTEN), kept across restarts: `metricsPorts` has them. @default false
   */
  metrics?: boolean;
}

export interface TestCluster {
  address: string;
  /** The admin token the cluster accepts (in `env` as TIDEMARK_TOKEN; `client` sends it). */
  token: string;
  /** host:port of every coordinator, by name. */
  coordinatorAddresses: Record<string, string>;
  /** With `metrics`, the metrics port of every process, by name ('coordinator', 'worker-1', ...). */
  metricsPorts: Record<string, number>;
  client: TidemarkClient;
  storeUrl: string;
  logFile: string;
  /** The environment of every process, and of CLI runs against the cluster. */
  env: NodeJS.ProcessEnv;
  /** With `tls`, the directory of the test CA and certificates (ca.pem, <role>.pem, <role>-key.pem). */
  tlsDir?: string;
  /** Certificate material to call the workers as the coordinator does: `new WorkerClient(address, { tls: cluster.workerTls })`. */
  workerTls: GrpcTls;
  /** Certificate material of a CLI client of the admin API: `new TidemarkClient(address, { tls: cluster.clientTls })`. */
  clientTls: GrpcTls;
  /** SIGKILL one process by name ('coordinator', 'worker-1', ...). */
  kill(name: string): Promise<void>;
  /**
   * Starts a stopped process again with the same id. `env` replaces that process's own
   * environment (processEnv), e.g. `{}` to start it without its failpoints.
   */
  restart(name: string, env?: Record<string, string>): void;
  /** Whether the named process is running (not exited or killed). */
  running(name: string): boolean;
  /** Waits until the named process exits; its exit code, or the signal's name. */
  exited(name: string, timeoutMs?: number): Promise<number | string>;
  /** Sends `signal` to the named process (e.g. SIGTERM, to stop it as an operator would). */
  signal(name: string, signal: NodeJS.Signals): void;
  /** SIGSTOP / SIGCONT a process: it stays connected but answers nothing (a stall). */
  pause(name: string): void;
  resume(name: string): void;
  waitForStatus(predicate: (status: StatusReply) => boolean, what: string, timeoutMs?: number): Promise<StatusReply>;
  stop(): Promise<void>;
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Waits until something accepts TCP connections on 127.0.0.1:`port`. */
async function waitForListener(port: number, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startTestCluster(options: TestClusterOptions): Promise<TestCluster> {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run "npm run build" first (npm test does)`);
  const port = await freePort();
  const tls = options.tls ?? true;
  const dir = mkdtempSync(join(tmpdir(), `${options.namespace}-`));
  const storeUrl = options.store.kind === 's3' ? `s3://${options.store.bucket}/${options.namespace}` : `file://${join(dir, 'store')}`;
  const logFile = join(dir, 'cluster.log');
  const log = createWriteStream(logFile);
  // The admin API runs with authentication, as in production: one admin token, known to the
  // test's client and, through TIDEMARK_TOKEN, to every CLI run with `env`.
  const token = generateToken();
  const tokensFile = join(dir, 'auth-tokens');
  const tokenLines = [tokenLine('admin', 'test-admin', token), ...(options.extraTokens ?? []).map(([role, name, t]) => tokenLine(role, name, t))];
  writeFileSync(tokensFile, `${tokenLines.join('\n')}\n`, { mode: 0o600 });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TIDEMARK_AMQP_URL: options.services.amqpUrl,
    TIDEMARK_MANAGEMENT_URL: options.services.managementUrl,
    TIDEMARK_REDIS_URL: options.services.redisUrl,
    TIDEMARK_STORE: storeUrl,
    TIDEMARK_S3_ENDPOINT: options.services.s3.endpoint,
    TIDEMARK_S3_ACCESS_KEY: options.services.s3.accessKey,
    TIDEMARK_S3_SECRET_KEY: options.services.s3.secretKey,
    TIDEMARK_S3_REGION: options.services.s3.region,
    TIDEMARK_PROTECT: options.protect,
    TIDEMARK_NAMESPACE: options.namespace,
    TIDEMARK_INTERVAL: options.interval ?? '0',
    TIDEMARK_PREPARE_TIMEOUT: options.prepareTimeout ?? '15s',
    TIDEMARK_COORDINATOR: `127.0.0.1:${port}`,
    TIDEMARK_LOG_LEVEL: 'info',
    // Tests read the log as JSON lines (test/helpers/log-lines.ts), whatever the developer's shell sets.
    TIDEMARK_LOG_FORMAT: 'json',
    ...(tls ? { TIDEMARK_TLS: 'on', TIDEMARK_TLS_DIR: await testTlsDir() } : { TIDEMARK_TLS: 'off' }),
    TIDEMARK_AUTH_TOKENS_FILE: tokensFile,
    TIDEMARK_TOKEN: token,
    ...options.extraEnv,
  };
  const processes = new Map<string, ChildProcess>();
  const coordinatorPorts = new Map<string, number>([['coordinator', port]]);
  for (let i = 2; i <= (options.coordinators ?? 1); i += 1) coordinatorPorts.set(`coordinator-${i}`, await freePort());
  const processEnv = new Map(Object.entries(options.processEnv ?? {}));
  const metricsPorts: Record<string, number> = {};
  if (options.metrics) {
    for (const name of [...coordinatorPorts.keys(), ...Array.from({ length: options.workers }, (_, i) => `worker-${i + 1}`)]) metricsPorts[name] = await freePort();
  }
  const metricsEnv = (name: string): Record<string, string> => (metricsPorts[name] ? { TIDEMARK_METRICS_LISTEN: `127.0.0.1:${metricsPorts[name]}` } : {});
  const args = (name: string) => {
    const own = options.processArgs?.[name] ?? [];
    const coordinatorPort = coordinatorPorts.get(name);
    if (coordinatorPort !== undefined) return ['coordinator', '--listen', `127.0.0.1:${coordinatorPort}`, ...own];
    return ['worker', ...(own.includes('--listen') ? [] : ['--listen', '127.0.0.1:0']), ...own];
  };
  const launch = (name: string) => {
    const child = spawn(process.execPath, [cli, ...args(name)], {
      env: { ...env, ...metricsEnv(name), ...processEnv.get(name), TIDEMARK_ID: name },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const tag = (chunk: Buffer) => log.write(chunk.toString().replace(/^(?=.)/gm, `[${name}] `));
    child.stdout?.on('data', tag);
    child.stderr?.on('data', tag);
    processes.set(name, child);
  };
  for (const name of coordinatorPorts.keys()) launch(name);
  // Workers bind ephemeral ports: start them only once the coordinators hold theirs, so a worker
  // cannot take a port freePort() handed to a coordinator.
  await Promise.all([...coordinatorPorts].map(([name, p]) => waitForListener(p, `${name} to listen on port ${p}; logs in ${logFile}`)));
  for (let i = 1; i <= options.workers; i += 1) launch(`worker-${i}`);
  const clientTls = loadGrpcTls(loadConfig({ env }), 'client');
  const workerTls = loadGrpcTls(loadConfig({ env }), 'coordinator');
  const client = new TidemarkClient(`127.0.0.1:${port}`, { deadlineMs: 60_000, tls: clientTls, token });

  const waitForStatus = (predicate: (status: StatusReply) => boolean, what: string, timeoutMs = 60_000) =>
    eventually(
      `${what} (logs in ${logFile})`,
      async () => {
        const status = await client.status();
        if (predicate(status)) return status;
        throw new Error(`status ${JSON.stringify(status)}`);
      },
      { timeoutMs },
    );

  const stopProcess = (name: string, signal: NodeJS.Signals) =>
    new Promise<void>((resolve) => {
      const child = processes.get(name);
      if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill(signal);
    });

  return {
    address: `127.0.0.1:${port}`,
    token,
    coordinatorAddresses: Object.fromEntries([...coordinatorPorts].map(([name, p]) => [name, `127.0.0.1:${p}`])),
    metricsPorts,
    client,
    storeUrl,
    logFile,
    env,
    tlsDir: tls ? env.TIDEMARK_TLS_DIR : undefined,
    workerTls,
    clientTls,
    kill: (name) => stopProcess(name, 'SIGKILL'),
    restart: (name, ownEnv) => {
      if (ownEnv) processEnv.set(name, ownEnv);
      launch(name);
    },
    running: (name) => {
      const child = processes.get(name);
      return child !== undefined && child.exitCode === null && child.signalCode === null;
    },
    exited: (name, timeoutMs = 60_000) =>
      new Promise<number | string>((resolve, reject) => {
        const child = processes.get(name);
        if (!child) return reject(new Error(`no process named ${name}`));
        if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode ?? child.signalCode!);
        const timer = setTimeout(() => reject(new Error(`${name} did not exit within ${timeoutMs}ms; logs in ${logFile}`)), timeoutMs);
        child.once('exit', (code, signal) => {
          clearTimeout(timer);
          resolve(code ?? signal ?? 'unknown');
        });
      }),
    signal: (name, signal) => void processes.get(name)?.kill(signal),
    pause: (name) => void processes.get(name)?.kill('SIGSTOP'),
    resume: (name) => void processes.get(name)?.kill('SIGCONT'),
    waitForStatus,
    async stop() {
      client.close();
      for (const child of processes.values()) child.kill('SIGCONT');
      await Promise.all([...processes.keys()].map((name) => stopProcess(name, 'SIGTERM')));
      log.end();
    },
  };
}
