/** The worker service: start one with startWorker(config). */
import {
  advertiseAddress,
  chooseListen,
  type Config,
  configureFailpoints,
  expiryWarning,
  loadGrpcTls,
  type Logger,
  logListenChoice,
  type MetricsServer,
  onlyPeerNamed,
  readTokenFile,
  serveMetrics,
  serverCredentials,
  startServer,
  stopServer,
  throwIfStopping,
} from '../core/index.js';
import { serveHealthOnly } from '../core/health/index.js';
import { WorkerServiceService } from '../gen/tidemark/v1/worker.js';
import { Worker } from './worker.js';
import { workerHandlers } from './worker-service.js';
import { workerHealth } from './worker-health.js';

export { Worker } from './worker.js';

export interface RunningWorker {
  worker: Worker;
  /** host:port the leader reaches this worker at. */
  address: string;
  /** The port of the metrics endpoint, when `metricsListen` is set. */
  metricsPort?: number;
  /** The port of the plaintext health endpoint, when `healthListen` is set. */
  healthPort?: number;
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
  // Health (grpc.health.v1): on the worker's port behind its mutual TLS, and on healthListen for probes.
  const health = workerHealth(worker, config, log.child('health'));
  let healthOnly: Awaited<ReturnType<typeof serveHealthOnly>> | undefined;
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
    ({ server, port } = await startServer([[WorkerServiceService, workerHandlers(worker)], ...health.health.status.service()], listen.address, {
      credentials: serverCredentials(tls, 'required'),
      refuse: onlyPeerNamed(tls, config.tlsCoordinatorName, `worker ${config.id}`),
    }));
    if (config.healthListen) {
      try {
        healthOnly = await serveHealthOnly(health.health.status, config.healthListen);
      } catch (err) {
        server.forceShutdown();
        throw err;
      }
      log.info('serving gRPC health in plaintext (healthListen)', { port: healthOnly.port });
    }
  } catch (err) {
    await health.close().catch(() => {});
    await worker.stop().catch(() => {});
    throw err;
  }
  // Only now is the port known, so only now can the worker tell the leader where it is.
  const address = config.advertise ?? advertiseAddress(config.listen ?? '127.0.0.1:0', port);
  log.info('serving the worker API', { port, tls: tls.enabled, ...(tls.enabled ? { onlyCaller: config.tlsCoordinatorName } : {}) });
  // The same setting and token rules as the coordinator's endpoint (docs/OPERATIONS.md#metrics).
  let metrics: MetricsServer | undefined;
  try {
    if (config.metricsListen) {
      const token = config.metricsTokenFile ? readTokenFile(config.metricsTokenFile, 'TIDEMARK_METRICS_TOKEN_FILE') : undefined;
      metrics = await serveMetrics(worker.metrics.registry, config.metricsListen, log.child('metrics'), { token });
      log.info('serving metrics (GET /metrics)', { port: metrics.port });
    }
    await worker.start(address, signal);
  } catch (err) {
    await metrics?.close();
    await healthOnly?.stop();
    server.forceShutdown();
    await health.close().catch(() => {});
    await worker.stop().catch(() => {});
    throw err;
  }
  health.health.start();
  return {
    worker,
    address,
    metricsPort: metrics?.port,
    healthPort: healthOnly?.port,
    async stop() {
      // NOT_SERVING first: probes see the worker going before its port closes.
      health.health.stop();
      await healthOnly?.stop();
      // Restores and prepares in flight end first, so their calls do not take the server's grace period.
      worker.interrupt();
      await metrics?.close();
      await stopServer(server, 2_000);
      await health.close();
      await worker.stop();
    },
  };
}
