/**
 * TLS material for a program using the typed client, from files it names (the CLI reads the same
 * from its configuration with loadGrpcTls). No TLS-directory fallback: what is not given is not
 * used.
 */
import { readFileSync } from 'node:fs';
import { ConfigError, errorMessage } from '../errors.js';
import type { GrpcTls } from './tls.js';

export interface ClientTlsFiles {
  /** CA certificate(s), PEM, that the coordinator's certificate must chain to. @default the system's roots */
  ca?: string;
  /** A client certificate (PEM) to present, with `key`; the admin API maps its name to a role. @default none */
  cert?: string;
  /** The client certificate's private key (PEM). @default none */
  key?: string;
  /** The name the coordinator's certificate must carry (docs/SECURITY.md#transport-security). @default tidemark-coordinator */
  coordinatorName?: string;
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`cannot read the ${what} ${path}: ${errorMessage(err)}; no connection was made. Fix the path or its permissions.`, { cause: err });
  }
}

/** TLS towards the coordinator's admin API from the files given; pass it as `new TidemarkClient(address, { tls })`. */
export function clientTlsFromFiles(files: ClientTlsFiles): GrpcTls {
  if ((files.cert === undefined) !== (files.key === undefined)) {
    throw new ConfigError(`a client certificate needs both cert and key; only the ${files.cert ? 'certificate' : 'key'} was given. Give both, or neither.`);
  }
  return {
    enabled: true,
    ca: files.ca === undefined ? undefined : readPem(files.ca, 'CA certificate'),
    cert: files.cert === undefined ? undefined : readPem(files.cert, 'client certificate'),
    key: files.key === undefined ? undefined : readPem(files.key, 'client private key'),
    coordinatorName: files.coordinatorName ?? 'tidemark-coordinator',
    // Unused by a client of the admin API, which calls no worker.
    workerName: 'tidemark-worker',
  };
}
