/** The coordinator service: start one with startCoordinator(config). */
import { type Config, configureFailpoints, type Logger, type MetricsServer, serveMetrics, startServer, stopServer, throwIfStopping } from '../core/index.js';
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
    ({ server, port } = await startServer([[CoordinatorServiceService, adminHandlers(coordinator)]], config.listen ?? '0.0.0.0:7700'));
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
  log.info(`coordinator ${coordinator.id} serving the admin API on port ${port}`);
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
