/** The worker service: start one with startWorker(config). */
import { hostname } from 'node:os';
import {
  chooseListen,
  type Config,
  configureFailpoints,
  expiryWarning,
  loadGrpcTls,
  type Logger,
  logListenChoice,
  onlyPeerNamed,
  serverCredentials,
  startServer,
  stopServer,
  throwIfStopping,
} from '../core/index.js';
import { WorkerServiceService } from '../gen/tidemark/v1/worker.js';
import { Worker } from './worker.js';
import { workerHandlers } from './worker-service.js';

export { Worker } from './worker.js';

export interface RunningWorker {
  worker: Worker;
  /** host:port the leader reaches this worker at. */
  address: string;
  stop(): Promise<void>;
}

/**
 * Starts a worker. When `signal` aborts while it starts (SIGTERM during startup), the startup
 * gives up whatever it is waiting for, closes what it opened, and rejects with a StoppingError.
 */
export async function startWorker(config: Config, log: Logger, signal?: AbortSignal): Promise<RunningWorker> {
  configureFailpoints(config.failpoints);
  // First: a missing certificate is a configuration error, found before anything is opened.
  const tls = loadGrpcTls(config, 'worker');
  const worker = await Worker.create({ config, log }, signal);
  let server: Awaited<ReturnType<typeof startServer>>['server'];
  let port: number;
  try {
    throwIfStopping(signal);
    // Loopback unless told; with TLS a worker serves only the coordinator (mutual TLS), so any
    // address the operator chooses is protected, and only a plaintext one is warned about.
    const listen = chooseListen({ explicit: config.listen, port: 0, protectedCalls: tls.enabled, exposeByDefault: false, service: 'worker', why: 'TLS is off (TIDEMARK_TLS=off)' });
    logListenChoice(listen, log);
    const expiring = expiryWarning(tls);
    if (expiring) log.warn('this process\'s TLS certificate (TIDEMARK_TLS_CERT) expires soon: issue a new one and restart before then, or its peers will refuse it', { expiresAt: tls.enabled ? tls.certificateExpiry?.toISOString() : undefined });
    ({ server, port } = await startServer([[WorkerServiceService, workerHandlers(worker)]], listen.address, {
      credentials: serverCredentials(tls, 'required'),
      refuse: onlyPeerNamed(tls, config.tlsCoordinatorName, `worker ${config.id}`),
    }));
  } catch (err) {
    await worker.stop().catch(() => {});
    throw err;
  }
  // Only now is the port known, so only now can the worker tell the leader where it is.
  const address = config.advertise ?? advertiseAddress(config.listen ?? '127.0.0.1:0', port);
  log.info('serving the worker API', { port, tls: tls.enabled, ...(tls.enabled ? { onlyCaller: config.tlsCoordinatorName } : {}) });
  try {
    await worker.start(address, signal);
  } catch (err) {
    server.forceShutdown();
    await worker.stop().catch(() => {});
    throw err;
  }
  return {
    worker,
    address,
    async stop() {
      // Restores and prepares in flight end first, so their calls do not take the server's grace period.
      worker.interrupt();
      await stopServer(server, 2_000);
      await worker.stop();
    },
  };
}

function advertiseAddress(listen: string, port: number): string {
  const host = listen.slice(0, listen.lastIndexOf(':'));
  const reachable = host === '0.0.0.0' || host === '::' || host === '[::]' ? hostname() : host;
  return `${reachable}:${port}`;
}
