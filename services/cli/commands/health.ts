/**
 * `health`: asks a server's gRPC health service (grpc.health.v1) whether it is SERVING, for
 * Docker HEALTHCHECKs and scripts (docs/CLI.md#health). Exits 0 when every server asked is
 * SERVING, 1 otherwise (Docker reads 1 as unhealthy), 2 for bad usage.
 */
import * as grpc from '@grpc/grpc-js';
import type { Command } from 'commander';
import { coordinatorChannel, errorMessage, loadGrpcTls, NotFoundError } from '../../core/index.js';
import { parseCoordinatorList } from '../../client/index.js';
import type { CliContext } from '../context.js';
import { EXIT_FAILED, ExitCode } from '../exit-codes.js';

/** How long one server has to answer. */
const HEALTH_DEADLINE_MS = 5_000;

/** One server's answer, as --json prints it. */
export interface HealthResult {
  address: string;
  /** SERVING, NOT_SERVING, ...; null when the server did not answer. */
  status: string | null;
  /** Why there is no status; null when there is one. */
  error: string | null;
}

export function addHealthCommand(program: Command, cli: CliContext): void {
  program
    .command('health')
    .description('ask a coordinator or worker whether it is SERVING (gRPC health); exit 0 if so, 1 if not')
    .option('--address <host:port>', 'the server to ask (a coordinator, a worker, or a --health-listen port); default: every coordinator of --coordinator')
    .option('--service <name>', 'the service name to ask about, e.g. tidemark.v1.CoordinatorService/leader (default: the whole server)', '')
    .option('--plaintext', 'speak plaintext, as a --health-listen port does (default: TLS as configured)')
    .option('--json', 'print JSON')
    .action(async (flags: { address?: string; service: string; plaintext?: boolean; json?: boolean }) => {
      const config = cli.config();
      const addresses = flags.address ? parseCoordinatorList(flags.address) : parseCoordinatorList(config.coordinator);
      const channel = flags.plaintext ? { credentials: grpc.credentials.createInsecure(), options: {} } : coordinatorChannel(loadGrpcTls(config, 'client'));
      // Loaded here, not with the CLI: the health library parses its proto when loaded.
      const { checkHealth } = await import('../../core/health/index.js');
      const results = await Promise.all(
        addresses.map(async (address): Promise<HealthResult> => {
          try {
            const status = await checkHealth(address, { credentials: channel.credentials, channelOptions: channel.options, service: flags.service, deadlineMs: HEALTH_DEADLINE_MS });
            return { address, status, error: null };
          } catch (err) {
            const unknown = err instanceof NotFoundError;
            return {
              address,
              status: unknown ? 'SERVICE_UNKNOWN' : null,
              error: unknown ? `it serves no health status for "${flags.service}" (docs/API.md#health lists the names)` : errorMessage(err),
            };
          }
        }),
      );
      const serving = results.every((r) => r.status === 'SERVING');
      if (flags.json) cli.printJson({ serving, service: flags.service, results });
      else for (const r of results) cli.print(`${r.address}: ${r.status ?? 'UNREACHABLE'}`);
      for (const r of results.filter((result) => result.status !== 'SERVING')) {
        cli.warn(
          r.status === 'NOT_SERVING'
            ? `${r.address} is NOT_SERVING${flags.service ? ` ${flags.service}` : ''}: it is starting or stopping, cannot reach Redis, the broker or the store${flags.service.endsWith('/leader') ? ', or is not the leader' : ''}; its log says which`
            : `${r.address}: ${r.error ?? r.status}`,
        );
      }
      if (!serving) throw new ExitCode(EXIT_FAILED);
    });
}
