/**
 * `tidemark cluster up`: a local cluster for development and the demo — one coordinator and N
 * workers, each its own process running this same CLI, sharing one configuration. Stops them all
 * on SIGINT/SIGTERM (a second signal makes them exit at once), and stops everything if one dies.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Config, environmentKeys, generateToken, readTokenFile, tokenLine } from '../core/index.js';
import { DEFAULT_TOKEN_FILE } from '../client/index.js';

export interface ClusterOptions {
  config: Config;
  workers: number;
  /** Port of the coordinator's admin API. */
  port: number;
  /** Called once every process is up, with the coordinator address. */
  onReady?: (coordinator: string) => void;
}

const main = fileURLToPath(new URL('./main.js', import.meta.url));

/**
 * Environment for a child: the parent's, with every setting of the resolved configuration made
 * explicit, so flags and a config file given to `cluster up` reach every process.
 */
function childEnv(config: Config, port: number): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const [variable, key] of Object.entries(environmentKeys)) {
    const value = config[key];
    // Each process takes its own role's certificate from the TLS directory (localTlsCertificates).
    if (value !== undefined && !NOT_PASSED_ON.has(key)) env[variable] = String(value);
  }
  for (const key of NOT_PASSED_ON) delete env[Object.entries(environmentKeys).find(([, k]) => k === key)![0]];
  env.TIDEMARK_TLS_DIR = resolve(config.tlsDir);
  env.TIDEMARK_COORDINATOR = `localhost:${port}`;
  // The children's stderr is a pipe to this process: they log for this terminal if it is one.
  if (config.logFormat === 'auto' && process.stderr.isTTY) env.TIDEMARK_LOG_FORMAT = 'pretty';
  return env;
}

/**
 * Keys not handed to the children: the id is each child's own, and so are its certificate files,
 * the address it is reached at and its health port (one address cannot serve them all); the
 * status page is the coordinator's.
 */
const NOT_PASSED_ON: ReadonlySet<string> = new Set(['id', 'tlsCa', 'tlsCert', 'tlsKey', 'advertise', 'healthListen', 'statusListen']);

/** The status page's port when --status-listen is not given and it is free. */
const STATUS_PAGE_PORT = 7780;

/** Resolves to a loopback port that is free now: `preferred` if it is, else one the system picks. */
function freeLoopbackPort(preferred: number): Promise<number> {
  const tryListen = (port: number) =>
    new Promise<number | undefined>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(undefined));
      server.listen(port, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => resolve(typeof address === 'object' && address ? address.port : undefined));
      });
    });
  return tryListen(preferred).then(async (port) => port ?? (await tryListen(0)) ?? preferred);
}

/**
 * With TLS on, the cluster runs with mutual TLS on the local CA of `config.tlsDir`, generated
 * the first time (owner-only files; core/tls/local-ca.ts): the coordinator, each worker and the
 * CLI in this directory take their own role's certificate from it.
 */
async function localTlsCertificates(config: Config): Promise<void> {
  if (!config.tls) {
    process.stderr.write('cluster up: TLS is off (TIDEMARK_TLS=off): plaintext gRPC on loopback, for development only\n');
    return;
  }
  if (config.tlsCa || config.tlsCert || config.tlsKey) {
    process.stderr.write(`cluster up: each process uses its own certificate from ${resolve(config.tlsDir)}; TIDEMARK_TLS_CA/CERT/KEY are not passed on\n`);
  }
  const { ensureLocalCertificates } = await import('../core/tls/index.js');
  const made = await ensureLocalCertificates(resolve(config.tlsDir), {
    coordinator: config.tlsCoordinatorName,
    worker: config.tlsWorkerName,
  });
  const dir = resolve(config.tlsDir);
  const howToFind = dir === resolve('.tidemark/tls') ? 'tidemark commands run from this directory find its client certificate' : `tidemark commands find its client certificate with TIDEMARK_TLS_DIR=${dir}`;
  process.stderr.write(`cluster up: mutual TLS with the local CA in ${dir}${made ? ' (generated now)' : ''}; ${howToFind}\n`);
}

function startChild(name: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  // Its own process group: Ctrl-C in the terminal reaches only this process, which forwards one
  // SIGTERM. A child that got the terminal's SIGINT and that SIGTERM would take it as a second
  // signal and exit without stopping cleanly.
  const child = spawn(process.execPath, [main, ...args], { env: { ...env, TIDEMARK_ID: name }, stdio: ['ignore', 'inherit', 'pipe'], detached: true });
  let pending = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) process.stderr.write(`[${name}] ${line}\n`);
  });
  return child;
}

/**
 * A local cluster's admin token, unless the configuration names callers itself: kept in
 * `.tidemark/admin-token` of the working directory (owner-only; reused by the next `cluster up`),
 * where the CLI run from the same directory finds it. The coordinator gets only its hash.
 */
function localAdminToken(config: Config, env: NodeJS.ProcessEnv): { admin: string; status: string } | undefined {
  if (config.authTokensFile || config.authTokens || config.authCertRoles || config.authDisabled) return undefined;
  const dir = resolve('.tidemark');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tokenFile = resolve(DEFAULT_TOKEN_FILE);
  const token = ownerOnlyToken(tokenFile, DEFAULT_TOKEN_FILE);
  // The status page's sign-in: a read-only token, so the browser never holds the admin one.
  const statusFile = resolve(dir, 'status-token');
  const statusToken = ownerOnlyToken(statusFile, '.tidemark/status-token');
  const tokensFile = resolve(dir, 'auth-tokens');
  writeFileSync(
    tokensFile,
    `# written by "tidemark cluster up": the hashes of ${DEFAULT_TOKEN_FILE} and .tidemark/status-token\n${tokenLine('admin', 'cluster-up', token)}\n${tokenLine('read', 'status-page', statusToken)}\n`,
    { mode: 0o600 },
  );
  env.TIDEMARK_AUTH_TOKENS_FILE = tokensFile;
  return { admin: tokenFile, status: statusFile };
}

/** The token in `file`, made there (owner-only) when the file does not exist yet. */
function ownerOnlyToken(file: string, name: string): string {
  let token: string;
  if (existsSync(file)) token = readTokenFile(file, `${name}, written by an earlier "tidemark cluster up"`);
  else {
    token = generateToken();
    writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
  }
  chmodSync(file, 0o600);
  return token;
}

export async function clusterUp(options: ClusterOptions): Promise<number> {
  await localTlsCertificates(options.config);
  const env = childEnv(options.config, options.port);
  const tokenFiles = localAdminToken(options.config, env);
  const statusListen = options.config.statusListen ?? `127.0.0.1:${await freeLoopbackPort(STATUS_PAGE_PORT)}`;
  const children: Array<{ name: string; child: ChildProcess }> = [];
  const coordinator = startChild('coordinator', ['coordinator', '--listen', `127.0.0.1:${options.port}`, '--status-listen', statusListen], env);
  children.push({ name: 'coordinator', child: coordinator });
  for (let i = 1; i <= options.workers; i += 1) {
    const name = `worker-${i}`;
    children.push({ name, child: startChild(name, ['worker', '--listen', '127.0.0.1:0'], env) });
  }
  let stopping = false;
  const signalAll = () => {
    for (const { child } of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  };
  const stopAll = () => {
    if (stopping) return;
    stopping = true;
    signalAll();
  };
  // The first signal stops every process cleanly; a second one makes them exit at once.
  const onSignal = () => (stopping ? signalAll() : stopAll());
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Detached children do not die with this process: never leave them behind.
  process.once('exit', () => {
    for (const { child } of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  process.stderr.write(`cluster up: coordinator at localhost:${options.port}, ${options.workers} worker(s); Ctrl-C stops them\n`);
  if (tokenFiles) {
    process.stderr.write(`cluster up: admin token in ${tokenFiles.admin}; the tidemark CLI run from this directory uses it (elsewhere: TIDEMARK_TOKEN_FILE=${tokenFiles.admin})\n`);
  }
  const pageUrl = `${options.config.tls ? 'https' : 'http'}://${statusListen.replace(/^0\.0\.0\.0:/, 'localhost:')}/`;
  const certificateNote = options.config.tls ? ` (its certificate is from the local CA ${resolve(options.config.tlsDir, 'ca.pem')}: trust it, or accept the browser's warning)` : '';
  const signIn = tokenFiles ? `the read-only token in ${tokenFiles.status}` : 'a token of the read role or higher from your TIDEMARK_AUTH_TOKENS_FILE';
  process.stderr.write(`cluster up: status page at ${pageUrl}${certificateNote}; sign in with ${signIn}\n`);
  options.onReady?.(`localhost:${options.port}`);
  const exits = children.map(
    ({ name, child }) =>
      new Promise<number>((resolve) => {
        child.once('exit', (code, signal) => {
          if (!stopping) {
            process.stderr.write(`cluster: ${name} exited (${signal ?? code}); stopping the cluster\n`);
            stopAll();
          }
          resolve(code ?? 0);
        });
      }),
  );
  const codes = await Promise.all(exits);
  return stopping && codes.every((c) => c === 0 || c === 143) ? 0 : 1;
}
