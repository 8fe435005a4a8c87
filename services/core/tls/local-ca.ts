/**
 * A local certificate authority for development, the demo, `tidemark cluster up` and tests: one
 * CA and certificates for the coordinator, workers and CLI clients, each naming its role
 * (docs/SECURITY.md#transport-security). Written as PEM files readable by their owner only.
 * Production installations bring their own PKI; nothing here is needed to run Tidemark.
 */
import 'reflect-metadata';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { KeyObject, randomBytes, webcrypto } from 'node:crypto';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

/** A certificate and its private key, PEM-encoded. */
export interface IssuedCertificate {
  cert: string;
  key: string;
}

export interface LocalCa {
  /** The CA certificate, PEM. */
  cert: string;
  /** Issues a certificate whose SAN (DNS) and CN carry `name`, plus `localhost` and 127.0.0.1 when `server`. */
  issue(name: string, options?: { server?: boolean; validDays?: number }): Promise<IssuedCertificate>;
}

function keyPem(key: CryptoKey): string {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }).toString();
}

function serial(): string {
  // A positive 64-bit serial number.
  const bytes = randomBytes(8);
  bytes[0] &= 0x7f;
  return bytes.toString('hex');
}

/** Creates a CA in memory. `name` is its CN. @default "Tidemark local CA" */
export async function createLocalCa(name = 'Tidemark local CA', validDays = 3650): Promise<LocalCa> {
  const keys = await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']) as CryptoKeyPair;
  const notBefore = new Date(Date.now() - 60_000);
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${name}`,
    notBefore,
    notAfter: new Date(notBefore.getTime() + validDays * 86_400_000),
    signingAlgorithm: algorithm,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return {
    cert: caCert.toString('pem'),
    async issue(subjectName, options = {}) {
      const leafKeys = await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']) as CryptoKeyPair;
      const names: Array<{ type: 'dns' | 'ip'; value: string }> = [{ type: 'dns', value: subjectName }];
      if (options.server) names.push({ type: 'dns', value: 'localhost' }, { type: 'ip', value: '127.0.0.1' }, { type: 'ip', value: '::1' });
      const leafNotBefore = new Date(Date.now() - 60_000);
      const leaf = await x509.X509CertificateGenerator.create({
        serialNumber: serial(),
        subject: `CN=${subjectName}`,
        issuer: caCert.subject,
        notBefore: leafNotBefore,
        notAfter: new Date(leafNotBefore.getTime() + (options.validDays ?? validDays) * 86_400_000),
        signingAlgorithm: algorithm,
        publicKey: leafKeys.publicKey,
        signingKey: keys.privateKey,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
          new x509.SubjectAlternativeNameExtension(names),
          await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey),
        ],
      });
      return { cert: leaf.toString('pem'), key: keyPem(leafKeys.privateKey) };
    },
  };
}

/** The roles of a local installation, each with its certificate files in a TLS directory. */
export const LOCAL_ROLES = ['coordinator', 'worker', 'client'] as const;
export type LocalRole = (typeof LOCAL_ROLES)[number];

/** File names in a TLS directory: ca.pem, then <role>.pem and <role>-key.pem per role. */
export function localTlsFiles(dir: string, role: LocalRole): { ca: string; cert: string; key: string } {
  return { ca: join(dir, 'ca.pem'), cert: join(dir, `${role}.pem`), key: join(dir, `${role}-key.pem`) };
}

/** Names the local certificates carry, matching the default tlsCoordinatorName / tlsWorkerName. */
export interface LocalNames {
  coordinator: string;
  worker: string;
  client: string;
}

const defaultNames: LocalNames = { coordinator: 'tidemark-coordinator', worker: 'tidemark-worker', client: 'tidemark-client' };

function writeOwnerOnly(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600 });
  // An existing file keeps its mode through writeFileSync: make sure.
  chmodSync(path, 0o600);
}

/**
 * Makes sure `dir` holds a local CA and a certificate per role (generating what is missing; an
 * existing complete set is kept, so a restarted `cluster up` and the CLI keep trusting each other).
 * The directory is 0700, every file 0600. Resolves to whether anything was generated.
 */
export async function ensureLocalCertificates(dir: string, names: Partial<LocalNames> = {}): Promise<boolean> {
  const all = { ...defaultNames, ...names };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const complete = LOCAL_ROLES.every((role) => {
    const files = localTlsFiles(dir, role);
    return existsSync(files.ca) && existsSync(files.cert) && existsSync(files.key);
  });
  if (complete) return false;
  const ca = await createLocalCa();
  writeOwnerOnly(join(dir, 'ca.pem'), ca.cert);
  for (const role of LOCAL_ROLES) {
    const issued = await ca.issue(all[role], { server: role !== 'client' });
    const files = localTlsFiles(dir, role);
    writeOwnerOnly(files.cert, issued.cert);
    writeOwnerOnly(files.key, issued.key);
  }
  return true;
}

/** Reads a role's files from a TLS directory made by ensureLocalCertificates. */
export function readLocalCertificates(dir: string, role: LocalRole): { ca: string; cert: string; key: string } {
  const files = localTlsFiles(dir, role);
  return { ca: readFileSync(files.ca, 'utf8'), cert: readFileSync(files.cert, 'utf8'), key: readFileSync(files.key, 'utf8') };
}
