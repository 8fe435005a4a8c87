/** The coordinator service: start one with startCoordinator(config). */
import {
  advertiseAddress,
  chooseListen,
  type Config,
  configureFailpoints,
  expiryWarning,
  type Logger,
  errorMessage,
  type ListenChoice,
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
import { reflectionServices, serveHealthOnly, type ServiceEntry } from '../core/health/index.js';
import { CoordinatorServiceService } from '../gen/tidemark/v1/admin.js';
import { Coordinator } from './coordinator.js';
import { adminHandlers } from './admin-service.js';
import { AdminAuthenticator, guardAdminService, parseCertRoles } from './admin-auth.js';
import { ADMIN_MAX_REQUEST_BYTES } from './admin-limits.js';
import { RestoreTargets } from './restore-targets.js';
import { RestoreService } from './restore-coordinator.js';
import { startStatusPage } from './status-page.js';
import type { StatusPageServer } from './status-page-server.js';
import { COORDINATOR_SERVICE, coordinatorHealth } from './coordinator-health.js';

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
  /** The status page's URL, when `statusListen` is set. */
  statusPageUrl?: string;
  /** The port of the plaintext health endpoint, when `healthListen` is set. */
  healthPort?: number;
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
  // Health (grpc.health.v1) on the admin port and, for probes without a certificate, on healthListen.
  const health = coordinatorHealth(coordinator, config, log.child('health'));
  let healthOnly: Awaited<ReturnType<typeof serveHealthOnly>> | undefined;
  let server: Awaited<ReturnType<typeof startServer>>['server'];
  let port: number;
  let metrics: MetricsServer | undefined;
  let page: StatusPageServer | undefined;
  let restores: RestoreService;
  let listen: ListenChoice;
  try {
    throwIfStopping(signal);
    const tls = coordinator.tls;
    // One RestoreService: the admin API runs restores, the status page lists them.
    restores = new RestoreService(coordinator, targets);
    const handlers = guardAdminService(CoordinatorServiceService, adminHandlers(coordinator, { targets, restores }), authenticator, log.child('auth'));
    // An address the operator gives is used as given, with a warning if it is exposed unprotected.
    listen = chooseListen({
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
    // Health and reflection are not admin calls: they need no token (guardAdminService guards only
    // CoordinatorService), and what they tell is no secret (docs/API.md).
    ({ server, port } = await startServer([[CoordinatorServiceService, handlers], ...health.health.status.service(), ...reflection(log)], listen.address, {
      maxReceiveBytes: ADMIN_MAX_REQUEST_BYTES,
      credentials: serverCredentials(tls, 'optional'),
    }));
    if (config.healthListen) {
      try {
        healthOnly = await serveHealthOnly(health.health.status, config.healthListen);
      } catch (err) {
        await stopServer(server, 0);
        throw err;
      }
      log.info('serving gRPC health in plaintext (healthListen)', { port: healthOnly.port });
    }
  } catch (err) {
    // Close what create() opened, or its connections keep the process alive after the error.
    await health.close().catch(() => {});
    await coordinator.stop().catch(() => {});
    throw err;
  }
  // Each new leader tells standbys where clients reach it (leader-directory.ts).
  const advertised = config.advertise ?? advertiseAddress(listen.address, port);
  coordinator.whenLeader(() => {
    coordinator.leaders.publish(coordinator.leaderToken, advertised).catch((err) => log.warn('cannot publish the leader address; standbys cannot point clients here until the next leader change', { address: advertised, err: errorMessage(err) }));
  });
  if (config.metricsListen) {
    try {
      const token = config.metricsTokenFile ? readTokenFile(config.metricsTokenFile, 'TIDEMARK_METRICS_TOKEN_FILE') : undefined;
      metrics = await serveMetrics(coordinator.metrics.registry, config.metricsListen, log.child('metrics'), { token });
    } catch (err) {
      await healthOnly?.stop();
      await stopServer(server, 0);
      await health.close().catch(() => {});
      await coordinator.stop().catch(() => {});
      throw err;
    }
    log.info('serving metrics (GET /metrics)', { port: metrics.port });
  }
  try {
    page = await startStatusPage(config, { coordinator, restores, authenticator, tls: coordinator.tls }, log.child('status-page'));
    await coordinator.start(signal);
  } catch (err) {
    await page?.close();
    await metrics?.close();
    await healthOnly?.stop();
    await stopServer(server, 0);
    await health.close().catch(() => {});
    await coordinator.stop().catch(() => {});
    throw err;
  }
  health.health.start();
  log.info('serving the admin API', { port, tls: coordinator.tls.enabled });
  return {
    coordinator,
    port,
    metricsPort: metrics?.port,
    statusPageUrl: page?.url,
    healthPort: healthOnly?.port,
    async stop() {
      // NOT_SERVING first: probes and clients go elsewhere while the rest stops.
      health.health.stop();
      await page?.close();
      await metrics?.close();
      await healthOnly?.stop();
      await stopServer(server, 2_000);
      await health.close();
      await coordinator.stop();
    },
  };
}

/**
 * Server reflection over the admin API and health, so that grpcurl works without the protos; off,
 * with a warning, when the installation lacks its proto/ directory.
 */
function reflection(log: Logger): ServiceEntry[] {
  try {
    return reflectionServices(['tidemark/v1/admin.proto'], [COORDINATOR_SERVICE]);
  } catch (err) {
    log.warn('server reflection is off', { reason: errorMessage(err) });
    return [];
  }
}
