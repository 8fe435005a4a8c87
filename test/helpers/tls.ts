/**
 * Certificates for tests, made once per test process by the same module `cluster up` uses
 * (services/core/tls): a CA with coordinator, worker and client certificates in a directory, and
 * certificates from a second, foreign CA for negative tests.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GrpcTls } from '../../services/core/grpc/tls.js';
import { createLocalCa, ensureLocalCertificates, type IssuedCertificate, type LocalCa } from '../../services/core/tls/index.js';

let dir: Promise<string> | undefined;

/** A directory holding the run's test CA (ca.pem) and coordinator, worker and client certificates. */
export function testTlsDir(): Promise<string> {
  dir ??= (async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'tidemark-tls-')), 'tls');
    await ensureLocalCertificates(path);
    return path;
  })();
  return dir;
}

let foreign: Promise<LocalCa> | undefined;

/** A certificate named `name` signed by a CA nobody in the test cluster trusts. */
export async function foreignCertificate(name: string): Promise<IssuedCertificate> {
  foreign ??= createLocalCa('Foreign CA');
  return (await foreign).issue(name, { server: true });
}

/** The same TLS material without a client certificate: a caller the server cannot identify by one. */
export function withoutCertificate(tls: GrpcTls): GrpcTls {
  return tls.enabled ? { ...tls, cert: undefined, key: undefined } : tls;
}
