/** The coordinator service: start one with startCoordinator(config). */
import {
  chooseListen,
  type Config,
  configureFailpoints,
  expiryWarning,
  type Logger,
  logListenChoice,
  type MetricsServer,
  serveMetrics,
  serverCredentials,
  startServer,
  stopServer,
  throwIfStopping,
} from '../core/index.js';
import { CoordinatorServiceService } from '../gen/tidemark/v1/admin.js';
import { Coordinator } from './coordinator.js';
import { adminHandlers } from './admin-service.js';

export { Coordinator } from './coordinator.js';

export interface RunningCoordinator {
  coordinator: Coordinator;
  port: number;
  /** The port of the metrics endpoint, when `metricsListen` is set. */
  metricsPort?: number;
  stop(): Promise<void>;
}

/**
 * Starts a coordinator. When `signal` aborts while it starts (SIGTERM during startup), the
 * startup gives up whatever it is waiting for, closes what it opened, and rejects with a
 * StoppingError.
 */
export async function startCoordinator(config: Config, log: Logger, signal?: AbortSignal): Promise<RunningCoordinator> {
  configureFailpoints(config.failpoints);
  const coordinator = await Coordinator.create(config, log, signal);
  let server: Awaited<ReturnType<typeof startServer>>['server'];
  let port: number;
  let metrics: MetricsServer | undefined;
  try {
    throwIfStopping(signal);
    const tls = coordinator.tls;
    // Every interface only once the admin API is protected: TLS, and callers authenticated.
    // MERGE: the admin API's caller authentication (issue 14, part 2) sets `callersAuthenticated`.
    const callersAuthenticated = false;
    const listen = chooseListen({
      explicit: config.listen,
      port: 7700,
      protectedCalls: tls.enabled && callersAuthenticated,
      service: 'coordinator admin API',
      why: tls.enabled ? 'its callers are not authenticated' : 'TLS is off (TIDEMARK_TLS=off)',
    });
    logListenChoice(listen, log);
    const expiring = expiryWarning(tls);
    if (expiring) log.warn(expiring);
    ({ server, port } = await startServer([[CoordinatorServiceService, adminHandlers(coordinator)]], listen.address, {
      credentials: serverCredentials(tls, 'optional'),
    }));
  } catch (err) {
    // Close what create() opened, or its connections keep the process alive after the error.
    await coordinator.stop().catch(() => {});
    throw err;
  }
  if (config.metricsListen) {
    try {
      metrics = await serveMetrics(coordinator.metrics.registry, config.metricsListen, log.child('metrics'));
    } catch (err) {
      await stopServer(server, 0);
      await coordinator.stop().catch(() => {});
      throw err;
    }
    log.info(`coordinator ${coordinator.id} serving metrics on port ${metrics.port} (GET /metrics)`);
  }
  try {
    await coordinator.start(signal);
  } catch (err) {
    await metrics?.close();
    await stopServer(server, 0);
    await coordinator.stop().catch(() => {});
    throw err;
  }
  log.info(`coordinator ${coordinator.id} serving the admin API on port ${port} (${coordinator.tls.enabled ? 'TLS' : 'plaintext, TIDEMARK_TLS=off'})`);
  return {
    coordinator,
    port,
    metricsPort: metrics?.port,
    async stop() {
      await metrics?.close();
      await stopServer(server, 2_000);
      await coordinator.stop();
    },
  };
}
