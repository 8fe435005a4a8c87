/**
 * The standard gRPC health service (grpc.health.v1.Health) of a Tidemark server, and a client of
 * it for `tidemark health`. Each service name answers SERVING or NOT_SERVING as the process's
 * readiness changes (docs/API.md#health); a name it does not serve answers NOT_FOUND.
 */
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation, service as healthDefinition } from 'grpc-health-check';
import { callUnary } from '../grpc/client.js';

/** A service definition and its handlers, as startServer takes them. */
export type ServiceEntry = [grpc.ServiceDefinition, grpc.UntypedServiceImplementation];

/** The whole server's status: what a probe asks for without naming a service. */
export const OVERALL_HEALTH = '';

/** The answer of Health/Check, as the protocol names it. */
export type ServingStatus = 'SERVING' | 'NOT_SERVING' | 'UNKNOWN' | 'SERVICE_UNKNOWN';

/**
 * Collects what a library adds with `addToServer(server)`, so that it can go through startServer
 * with every other service (undecodable requests answered, a worker's peer check applied).
 */
export function servicesOf(add: (server: { addService(definition: never, implementation: never): void }) => void): ServiceEntry[] {
  const entries: ServiceEntry[] = [];
  add({ addService: (definition: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation) => void entries.push([definition, implementation]) } as never);
  return entries;
}

/** The serving status of each service name this process answers for; every name starts NOT_SERVING. */
export class HealthStatus {
  private readonly implementation = new HealthImplementation();
  private readonly statuses = new Map<string, boolean>();

  constructor(names: readonly string[]) {
    for (const name of names) this.set(name, false);
  }

  set(name: string, serving: boolean): void {
    if (this.statuses.get(name) === serving) return;
    this.statuses.set(name, serving);
    this.implementation.setStatus(name, serving ? 'SERVING' : 'NOT_SERVING');
  }

  serving(name: string): boolean | undefined {
    return this.statuses.get(name);
  }

  /** grpc.health.v1.Health (Check, Watch, List) answering from these statuses. */
  service(): ServiceEntry[] {
    return servicesOf((server) => this.implementation.addToServer(server as never));
  }
}

/** The one method of the client used here, as makeClientConstructor builds it. */
interface HealthCheckClient extends grpc.Client {
  check(
    request: { service: string },
    metadata: grpc.Metadata,
    options: Partial<grpc.CallOptions>,
    callback: (error: grpc.ServiceError | null, response: { status: ServingStatus }) => void,
  ): grpc.ClientUnaryCall;
}

/** Client of grpc.health.v1.Health. */
const HealthClient = grpc.makeClientConstructor(healthDefinition as unknown as grpc.ServiceDefinition, 'grpc.health.v1.Health');

export interface HealthCheckOptions {
  credentials: grpc.ChannelCredentials;
  /** Channel options (e.g. the TLS name override of coordinatorChannel). @default none */
  channelOptions?: grpc.ChannelOptions;
  /** The service name asked about; '' for the whole server. @default '' */
  service?: string;
  /** @default 5000 */
  deadlineMs?: number;
}

/** Asks a server's health service; rejects with the mapped Tidemark error when the call fails. */
export async function checkHealth(address: string, options: HealthCheckOptions): Promise<ServingStatus> {
  const client = new HealthClient(address, options.credentials, options.channelOptions) as unknown as HealthCheckClient;
  try {
    const reply = await callUnary(client.check.bind(client), { service: options.service ?? OVERALL_HEALTH }, { deadlineMs: options.deadlineMs ?? 5_000, what: `health service at ${address}` });
    return reply.status;
  } finally {
    client.close();
  }
}
