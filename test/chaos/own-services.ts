/**
 * Services a chaos run owns and can break: its own redis-server and its own s3rver, each a child
 * process it can kill and start again on the same address, and a restart of the local RabbitMQ
 * node (shared, so only the full `npm run chaos` does that one).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, closeSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import amqp from 'amqplib';
import { ManagementClient } from '../../services/core/amqp/management-client.js';
import { FaultProxy } from './proxy.js';
import { repositoryRoot } from '../helpers/repo.js';
import { eventually } from '../helpers/eventually.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));


async function waitFor(what: string, timeoutMs: number, probe: () => Promise<boolean>): Promise<void> {
  await eventually(`${what} to answer`, probe, { timeoutMs, intervalMs: 100 });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function killChild(child: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = exited(child);
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await gone;
  clearTimeout(timer);
}

/** Sends PING over a raw socket; true on +PONG. */
function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (data) => done(data.toString().startsWith('+PONG')));
  });
}

/** A redis-server child without persistence: a restart loses everything, as a crash would. */
export class RedisServer {
  private child: ChildProcess | undefined;

  private constructor(
    readonly port: number,
    private readonly logFile: string,
  ) {}

  static async start(port: number, logFile: string): Promise<RedisServer> {
    const server = new RedisServer(port, logFile);
    await server.launch();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Starts redis-server on the port and waits for PONG. */
  async launch(): Promise<void> {
    const log = openSync(this.logFile, 'a');
    try {
      this.child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
        stdio: ['ignore', log, log],
      });
    } finally {
      closeSync(log);
    }
    const child = this.child;
    const failed = new Promise<never>((_, reject) => {
      child.once('error', (err) => reject(new Error(`cannot run redis-server (is it installed?): ${err.message}`)));
      child.once('exit', (code) => reject(new Error(`redis-server exited with code ${code} at start; see ${this.logFile}`)));
    });
    failed.catch(() => {});
    await Promise.race([waitFor(`redis-server on port ${this.port}`, 10_000, () => redisPing(this.port)), failed]);
  }

  /** SIGKILL: every key is gone. */
  async kill(): Promise<void> {
    await killChild(this.child, 'SIGKILL');
  }

  async stop(): Promise<void> {
    await killChild(this.child, 'SIGTERM');
  }
}

/** s3rver accepts only its built-in account. */
export const S3RVER_KEY = 'S3RVER';

/**
 * An s3rver child (test/helpers/s3rver-main.mjs) on a directory that outlives it, behind a
 * forwarding proxy on a fixed port: the server picks a new port at every start, the proxy keeps
 * the endpoint the cluster was given. SIGKILL keeps the directory (the script removes it on any
 * other exit), so a restart comes back with every object.
 */
export class S3Server {
  private child: ChildProcess | undefined;

  private constructor(
    private readonly directory: string,
    private readonly front: FaultProxy,
  ) {}

  static async start(): Promise<S3Server> {
    const directory = mkdtempSync(join(tmpdir(), 'tidemark-chaos-s3-'));
    // Nothing listens behind the proxy until launch() points it at the server.
    const front = await FaultProxy.start({ target: { host: '127.0.0.1', port: 1 } });
    const server = new S3Server(directory, front);
    try {
      await server.launch();
    } catch (err) {
      await front.close();
      throw err;
    }
    return server;
  }

  get endpoint(): string {
    return `http://${this.front.address}`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  async launch(): Promise<void> {
    const script = join(repositoryRoot(), 'test', 'helpers', 's3rver-main.mjs');
    // The IPC channel makes the server exit if this process dies without cleaning up.
    const child = spawn(process.execPath, [script, this.directory], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    this.child = child;
    const port = await new Promise<number>((resolve, reject) => {
      const lines = createInterface({ input: child.stdout! });
      const timer = setTimeout(() => reject(new Error('s3rver did not report its port within 15s')), 15_000);
      child.once('exit', (code, signal) => reject(new Error(`s3rver exited before listening (code ${code}, signal ${signal})`)));
      lines.once('line', (line) => {
        clearTimeout(timer);
        lines.close();
        child.stdout?.resume();
        try {
          resolve((JSON.parse(line) as { port: number }).port);
        } catch (err) {
          reject(new Error(`s3rver printed ${JSON.stringify(line)} instead of its port`, { cause: err }));
        }
      });
    });
    this.front.setTarget({ host: '127.0.0.1', port });
    await waitFor(`s3rver at ${this.endpoint}`, 15_000, async () => {
      const response = await fetch(this.endpoint, { signal: AbortSignal.timeout(2_000) });
      await response.body?.cancel();
      return true;
    });
  }

  /** SIGKILL, so the data directory survives for the next launch(). */
  async kill(): Promise<void> {
    await killChild(this.child, 'SIGKILL');
  }

  /** Stops for good; the server removes its directory on a clean exit. */
  async stop(): Promise<void> {
    if (this.running) {
      await killChild(this.child, 'SIGTERM');
    } else {
      // Killed last: start it once more so that it removes its directory as it exits.
      await this.launch().catch(() => {});
      await killChild(this.child, 'SIGTERM');
    }
    await this.front.close();
  }
}

function run(command: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${command} ${args.join(' ')} failed: ${err.message} ${stderr}`.trim()));
      else resolve(stdout);
    });
  });
}

/** Set while this process has stopped the RabbitMQ application and not started it again. */
let rabbitStoppedByUs = false;

interface ConnectionInfo {
  name: string;
  vhost: string;
  /** The client's connection_name property. */
  client_properties?: { connection_name?: string };
}

/** A management API call with the credentials of its URL (fetch refuses them in the URL). */
async function management(managementUrl: string, method: string, path: string): Promise<Response> {
  const url = new URL(managementUrl);
  const auth = Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64');
  const base = `${url.protocol}//${url.host}${url.pathname.replace(/\/$/, '')}`;
  const response = await fetch(`${base}/api/${path}`, { method, headers: { authorization: `Basic ${auth}` }, signal: AbortSignal.timeout(5_000) });
  if (!response.ok && response.status !== 404) throw new Error(`${method} /api/${path}: HTTP ${response.status}`);
  return response;
}

async function connections(managementUrl: string): Promise<ConnectionInfo[]> {
  return (await (await management(managementUrl, 'GET', 'connections?columns=name,vhost,client_properties')).json()) as ConnectionInfo[];
}

/**
 * Connections to vhosts other than `own`, by name: someone else is using the broker. Connections
 * whose name starts with one of `ownNames` and a space (the run's processes' health checks, named
 * `<client name> <vhost>`, which connect to the AMQP URL's vhost) are the run's own wherever they go.
 */
export async function foreignConnections(managementUrl: string, own: string[], ownNames: string[] = []): Promise<string[]> {
  const ours = (name = '') => ownNames.some((prefix) => name.startsWith(`${prefix} `));
  return (await connections(managementUrl))
    .filter((c) => !own.includes(c.vhost) && !ours(c.client_properties?.connection_name))
    .map((c) => `${c.name} (vhost ${c.vhost})`);
}

/** Has the broker close every connection whose client named itself `connectionName`; how many it closed. */
export async function closeConnectionsNamed(managementUrl: string, connectionName: string): Promise<number> {
  const named = (await connections(managementUrl)).filter((c) => c.client_properties?.connection_name === connectionName);
  for (const c of named) await management(managementUrl, 'DELETE', `connections/${encodeURIComponent(c.name)}`);
  return named.length;
}

export interface RabbitRestartOptions {
  /** How long the application stays stopped. */
  downMs: number;
  /** The run's own vhosts: connections to any other vhost belong to someone else. */
  ownVhosts: string[];
  /** Connection name prefixes of the run's own connections to other vhosts. @default none */
  ownConnectionNames?: string[];
  /** Wait up to this long for other users' connections to go before stopping the broker. @default 120000 */
  quietWaitMs?: number;
  log: (line: string) => void;
}

/**
 * Restarts the RabbitMQ application of the local node (`rabbitmqctl stop_app`, a pause,
 * `start_app`) and waits until both AMQP and the management API answer again. Every client of
 * the broker is disconnected, so it first waits (a while) for other users' connections to go.
 */
export async function restartRabbitMQ(amqpUrl: string, managementUrl: string, options: RabbitRestartOptions): Promise<void> {
  const host = new URL(amqpUrl).hostname;
  if (!['localhost', '127.0.0.1', '::1', '[::1]'].includes(host)) {
    throw new Error(`restarting RabbitMQ needs rabbitmqctl on the broker's machine; ${host} is not this machine`);
  }
  const quietBy = Date.now() + (options.quietWaitMs ?? 120_000);
  const foreign = () => foreignConnections(managementUrl, options.ownVhosts, options.ownConnectionNames).catch(() => []);
  let others = await foreign();
  if (others.length > 0) options.log(`waiting for ${others.length} other connection(s) to leave the shared broker before restarting it: ${others.slice(0, 3).join(', ')}`);
  while (others.length > 0 && Date.now() < quietBy) {
    await sleep(1_000);
    others = await foreign();
  }
  if (others.length > 0) options.log(`restarting RabbitMQ although ${others.length} other connection(s) remain: ${others.slice(0, 3).join(', ')}`);
  rabbitStoppedByUs = true;
  await run('rabbitmqctl', ['-q', 'stop_app'], 120_000);
  await sleep(options.downMs);
  await startRabbitMQ(amqpUrl, managementUrl);
}

async function startRabbitMQ(amqpUrl: string, managementUrl: string): Promise<void> {
  await run('rabbitmqctl', ['-q', 'start_app'], 180_000);
  rabbitStoppedByUs = false;
  await waitFor('RabbitMQ AMQP', 120_000, async () => {
    const connection = await amqp.connect(amqpUrl);
    await connection.close();
    return true;
  });
  const management = new ManagementClient(managementUrl);
  await waitFor('RabbitMQ management API', 120_000, async () => {
    await management.overview();
    return true;
  });
}

/** Starts the RabbitMQ application again if a restart of ours was interrupted midway. */
export async function ensureRabbitMQStarted(amqpUrl: string, managementUrl: string): Promise<boolean> {
  if (!rabbitStoppedByUs) return false;
  // A stop_app may still be under way: start_app can fail until it is done.
  for (let attempt = 1; ; attempt += 1) {
    try {
      await startRabbitMQ(amqpUrl, managementUrl);
      return true;
    } catch (err) {
      if (attempt >= 5) throw err;
      await sleep(2_000);
    }
  }
}
