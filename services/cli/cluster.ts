/**
 * `tidemark cluster up`: a local cluster for development and the demo — one coordinator and N
 * workers, each its own process running this same CLI, sharing one configuration. Stops them all
 * on SIGINT/SIGTERM (a second signal makes them exit at once), and stops everything if one dies.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
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

/** Keys not handed to the children: the id is each child's own, and so are its certificate files. */
const NOT_PASSED_ON: ReadonlySet<string> = new Set(['id', 'tlsCa', 'tlsCert', 'tlsKey']);

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
function localAdminToken(config: Config, env: NodeJS.ProcessEnv): string | undefined {
  if (config.authTokensFile || config.authTokens || config.authCertRoles || config.authDisabled) return undefined;
  const dir = resolve('.tidemark');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tokenFile = resolve(DEFAULT_TOKEN_FILE);
  let token: string;
  if (existsSync(tokenFile)) token = readTokenFile(tokenFile, `${DEFAULT_TOKEN_FILE}, written by an earlier "tidemark cluster up"`);
  else {
    token = generateToken();
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600, flag: 'wx' });
  }
  chmodSync(tokenFile, 0o600);
  const tokensFile = resolve(dir, 'auth-tokens');
  writeFileSync(tokensFile, `# written by "tidemark cluster up": the hash of ${DEFAULT_TOKEN_FILE}\n${tokenLine('admin', 'cluster-up', token)}\n`, { mode: 0o600 });
  env.TIDEMARK_AUTH_TOKENS_FILE = tokensFile;
  return tokenFile;
}

export async function clusterUp(options: ClusterOptions): Promise<number> {
  await localTlsCertificates(options.config);
  const env = childEnv(options.config, options.port);
  const tokenFile = localAdminToken(options.config, env);
  const children: Array<{ name: string; child: ChildProcess }> = [];
  const coordinator = startChild('coordinator', ['coordinator', '--listen', `127.0.0.1:${options.port}`], env);
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
  if (tokenFile) {
    process.stderr.write(`cluster up: admin token in ${tokenFile}; the tidemark CLI run from this directory uses it (elsewhere: TIDEMARK_TOKEN_FILE=${tokenFile})\n`);
  }
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
