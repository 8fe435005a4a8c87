/** The coordinator service: start one with startCoordinator(config). */
import {
  chooseListen,
  type Config,
  configureFailpoints,
  expiryWarning,
  type Logger,
  logListenChoice,
  type MetricsServer,
  parseTokenLines,
  readTokenFile,
  readTokensFile,
  serveMetrics,
  serverCredentials,
  startServer,
  stopServer,
  throwIfStopping,
  TokenTable,
} from '../core/index.js';
import { CoordinatorServiceService } from '../gen/tidemark/v1/admin.js';
import { Coordinator } from './coordinator.js';
import { adminHandlers } from './admin-service.js';
import { AdminAuthenticator, guardAdminService, parseCertRoles } from './admin-auth.js';
import { ADMIN_MAX_REQUEST_BYTES } from './admin-limits.js';
import { RestoreTargets } from './restore-targets.js';

export { Coordinator } from './coordinator.js';

/**
 * The admin API's address when --listen is not given: every interface only once callers must
 * authenticate and the port speaks TLS (tokens must not cross a network in plaintext), else
 * loopback.
 */
export function defaultAdminListen(security: { authenticated: boolean; tls: boolean }): string {
  return security.authenticated && security.tls ? '0.0.0.0:7700' : '127.0.0.1:7700';
}

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
  // Who may call, and where restores may go, are checked before anything is connected.
  const authenticator = new AdminAuthenticator({
    tokens: new TokenTable([
      ...(config.authTokensFile ? readTokensFile(config.authTokensFile) : []),
      ...parseTokenLines(config.authTokens.replaceAll(';', '\n'), 'TIDEMARK_AUTH_TOKENS'),
    ]),
    certRoles: parseCertRoles(config.authCertRoles),
    disabled: config.authDisabled,
  });
  if (authenticator.disabled) log.warn('the admin API lets every caller do everything (TIDEMARK_AUTH_DISABLED): for development only');
  // The service's edge: passwordEnv variables of restore targets are read here.
  const targets = RestoreTargets.load(config.restoreTargetsFile, process.env);
  const coordinator = await Coordinator.create(config, log, signal);
  let server: Awaited<ReturnType<typeof startServer>>['server'];
  let port: number;
  let metrics: MetricsServer | undefined;
  try {
    throwIfStopping(signal);
    const tls = coordinator.tls;
    const handlers = guardAdminService(CoordinatorServiceService, adminHandlers(coordinator, { targets }), authenticator, log.child('auth'));
    // An address the operator gives is used as given, with a warning if it is exposed unprotected.
    const listen = chooseListen({
      explicit: config.listen ?? defaultAdminListen({ authenticated: !authenticator.disabled, tls: tls.enabled }),
      port: 7700,
      protectedCalls: tls.enabled && !authenticator.disabled,
      service: 'coordinator admin API',
      why: tls.enabled ? 'its callers are not authenticated (TIDEMARK_AUTH_DISABLED)' : 'TLS is off (TIDEMARK_TLS=off)',
    });
    logListenChoice(listen, log);
    if (!config.listen && listen.address.startsWith('127.')) log.info('the admin API listens on loopback only: without TLS and authentication it is not offered to the network; set --listen to choose', { listen: listen.address });
    const expiring = expiryWarning(tls);
    if (expiring) log.warn('this process\'s TLS certificate (TIDEMARK_TLS_CERT) expires soon: issue a new one and restart before then, or its peers will refuse it', { expiresAt: tls.enabled ? tls.certificateExpiry?.toISOString() : undefined });
    ({ server, port } = await startServer([[CoordinatorServiceService, handlers]], listen.address, {
      maxReceiveBytes: ADMIN_MAX_REQUEST_BYTES,
      credentials: serverCredentials(tls, 'optional'),
    }));
  } catch (err) {
    // Close what create() opened, or its connections keep the process alive after the error.
    await coordinator.stop().catch(() => {});
    throw err;
  }
  if (config.metricsListen) {
    try {
      const token = config.metricsTokenFile ? readTokenFile(config.metricsTokenFile, 'TIDEMARK_METRICS_TOKEN_FILE') : undefined;
      metrics = await serveMetrics(coordinator.metrics.registry, config.metricsListen, log.child('metrics'), { token });
    } catch (err) {
      await stopServer(server, 0);
      await coordinator.stop().catch(() => {});
      throw err;
    }
    log.info('serving metrics (GET /metrics)', { port: metrics.port });
  }
  try {
    await coordinator.start(signal);
  } catch (err) {
    await metrics?.close();
    await stopServer(server, 0);
    await coordinator.stop().catch(() => {});
    throw err;
  }
  log.info('serving the admin API', { port, tls: coordinator.tls.enabled });
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
