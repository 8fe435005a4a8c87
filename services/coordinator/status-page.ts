/**
 * Starts the coordinator's status page when `statusListen` is set (docs/OPERATIONS.md#status-page):
 * HTTPS with the coordinator's own server certificate when TLS is on, plain HTTP only with TLS off.
 * An address the operator gives is used as given, with a warning when it is reachable from the
 * network without TLS or without authentication, as for the admin API (chooseListen).
 */
import { chooseListen, type Config, type GrpcTls, type Logger, logListenChoice } from '../core/index.js';
import type { AdminAuthenticator } from './admin-auth.js';
import type { Coordinator } from './coordinator.js';
import type { RestoreService } from './restore-coordinator.js';
import { serveStatusPage, type StatusPageServer } from './status-page-server.js';
import { statusPageApi } from './status-page-views.js';

export async function startStatusPage(
  config: Pick<Config, 'statusListen'>,
  parts: { coordinator: Coordinator; restores: RestoreService; authenticator: AdminAuthenticator; tls: GrpcTls },
  log: Logger,
): Promise<StatusPageServer | undefined> {
  if (!config.statusListen) return undefined;
  const { coordinator, restores, authenticator, tls } = parts;
  const listen = chooseListen({
    explicit: config.statusListen,
    port: 0,
    protectedCalls: tls.enabled && !authenticator.disabled,
    service: 'status page',
    why: tls.enabled ? 'its callers are not authenticated (TIDEMARK_AUTH_DISABLED)' : 'TLS is off (TIDEMARK_TLS=off): tokens and data cross the network in plaintext',
  });
  logListenChoice(listen, log);
  const page = await serveStatusPage({ listen: listen.address, tls, authenticator, api: statusPageApi(coordinator, restores), log });
  log.info('serving the status page; sign in with a token of the read role or higher', { url: page.url, tls: tls.enabled });
  return page;
}
