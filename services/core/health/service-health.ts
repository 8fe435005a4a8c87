/**
 * A service's health as its grpc.health.v1 service reports it (docs/API.md#health): SERVING while
 * the service has started, is not stopping, and every dependency answers (infrastructure/
 * readiness.ts); NOT_SERVING otherwise. Besides the whole server ('') and the service's own name,
 * a service may answer for names with a condition of their own (the coordinator's leader name).
 */
import { ConfigError, errorMessage } from '../errors.js';
import type { Logger } from '../infrastructure/log.js';
import { Readiness, type ReadinessCheck } from '../infrastructure/readiness.js';
import { HealthStatus, OVERALL_HEALTH } from './health-service.js';
import { startServer, stopServer } from '../grpc/server.js';
import type * as grpc from '@grpc/grpc-js';

/** How often conditions that change without an event (leadership) are read again. */
const REFRESH_MS = 500;

export interface ServiceHealthOptions {
  /** The full name of the service's gRPC service, e.g. `tidemark.v1.WorkerService`. */
  service: string;
  /** What must answer for the service to be ready. */
  checks: ReadinessCheck[];
  /** More names, each SERVING while ready and its condition holds. @default none */
  conditional?: Record<string, () => boolean>;
  log: Logger;
}

export class ServiceHealth {
  readonly status: HealthStatus;
  readonly readiness: Readiness;
  private started = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: ServiceHealthOptions) {
    this.status = new HealthStatus([OVERALL_HEALTH, options.service, ...Object.keys(options.conditional ?? {})]);
    this.readiness = new Readiness(options.checks, { log: options.log });
    this.readiness.onChange((state) => {
      this.refresh();
      if (this.started && state.ready) options.log.info('serving: every dependency answers');
    });
  }

  /** Starts probing the dependencies; the service is SERVING once they answer. */
  start(): void {
    this.started = true;
    this.readiness.start();
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
    this.timer.unref();
    this.refresh();
  }

  /** NOT_SERVING from now on (the service is stopping: callers should go elsewhere). */
  stop(): void {
    this.started = false;
    clearInterval(this.timer);
    this.readiness.stop();
    this.refresh();
  }

  private refresh(): void {
    const serving = this.started && this.readiness.ready;
    this.status.set(OVERALL_HEALTH, serving);
    this.status.set(this.options.service, serving);
    for (const [name, condition] of Object.entries(this.options.conditional ?? {})) this.status.set(name, serving && condition());
  }
}

/**
 * A plaintext server answering only grpc.health.v1 (`healthListen`), for probes that cannot
 * present a client certificate (Kubernetes' gRPC probes, Docker's HEALTHCHECK). Every other
 * service is UNIMPLEMENTED there.
 */
export async function serveHealthOnly(status: HealthStatus, address: string): Promise<{ port: number; stop(): Promise<void> }> {
  let started: { server: grpc.Server; port: number };
  try {
    started = await startServer(status.service(), address);
  } catch (err) {
    throw new ConfigError(`cannot serve health on ${address} (healthListen: --health-listen, TIDEMARK_HEALTH_LISTEN): ${errorMessage(err)}`, { cause: err });
  }
  const { server, port } = started;
  return { port, stop: () => stopServer(server, 0) };
}
