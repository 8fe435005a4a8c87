/**
 * `tls init`: generates a local CA with coordinator, worker and client certificates in the TLS
 * directory (what `cluster up` does on its own), for installations that start the services some
 * other way, such as docker compose (docs/SECURITY.md#transport-security).
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

export function addTlsCommands(program: Command, cli: CliContext): void {
  program
    .command('tls')
    .description('certificates for mutual TLS')
    .command('init')
    .description('generate a local CA and coordinator, worker and client certificates in the TLS directory, unless it has them')
    .option('--dir <dir>', 'where (TIDEMARK_TLS_DIR, default .tidemark/tls)')
    .action(async (flags: { dir?: string }) => {
      const config = cli.config(flags.dir ? { tlsDir: flags.dir } : {});
      const dir = resolve(config.tlsDir);
      const { ensureLocalCertificates } = await import('../../core/tls/index.js');
      const made = await ensureLocalCertificates(dir, { coordinator: config.tlsCoordinatorName, worker: config.tlsWorkerName });
      cli.print(
        made
          ? `generated a local CA and certificates in ${dir} (owner-only files): ca.pem, coordinator.pem, worker.pem, client.pem and their -key.pem`
          : `${dir} already holds a local CA and certificates: kept`,
      );
    });
}
