/**
 * Transport security of Tidemark's gRPC services (docs/SECURITY.md#transport-security): the
 * certificate files a process uses, the server and channel credentials built from them, and the
 * identity a verified peer certificate carries.
 *
 * Roles are certificate names: the coordinator's certificate carries `tlsCoordinatorName`, every
 * worker's `tlsWorkerName` (in a DNS subject alternative name, or the CN when it has none).
 * - a worker asks every caller for a certificate of the CA and serves only the coordinator name;
 * - the coordinator, calling a worker, accepts only a server certificate with the worker name;
 * - a CLI or client-library caller accepts only a coordinator certificate with the coordinator
 *   name; the admin API asks callers for a certificate but does not require one (authentication of
 *   admin callers, by token or by `certificateIdentity`, is the admin API's own layer).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { join, resolve } from 'node:path';
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { ConfigError, errorMessage } from '../errors.js';
import { clientChannelOptions } from './options.js';

/** Which certificate of a TLS directory a process presents. */
export type TlsRole = 'coordinator' | 'worker' | 'client';

/** The TLS settings of the configuration (infrastructure/config.ts). */
export interface TlsSettings {
  /** TLS on gRPC; false only for development (plaintext, loopback by default). */
  tls: boolean;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** Where the local CA of `cluster up` lives; used for any of the three files not set. */
  tlsDir: string;
  tlsCoordinatorName: string;
  tlsWorkerName: string;
}

/** The certificate material a process uses: read once at start-up. */
export type GrpcTls =
  | { enabled: false }
  | {
      enabled: true;
      /** CA certificates (PEM) that peers' certificates must chain to; undefined: the system's roots. */
      ca?: Buffer;
      /** This process's certificate chain and key (PEM); a client may have none. */
      cert?: Buffer;
      key?: Buffer;
      /** Names the coordinator and worker certificates carry. */
      coordinatorName: string;
      workerName: string;
      /** When this process's certificate expires, if it has one. */
      certificateExpiry?: Date;
    };

function readPem(path: string, what: string, variable: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`cannot read the ${what} ${path} (${variable}): ${errorMessage(err)}; nothing was started. Fix the path or its permissions.`, { cause: err });
  }
}

/**
 * The certificate files of a process in role `role`: each of tlsCa, tlsCert, tlsKey that is set,
 * else the file of the TLS directory (ca.pem, <role>.pem, <role>-key.pem) when it exists. A
 * server needs all three (a ConfigError says how to get them); a client needs none (it then
 * trusts the system's roots and presents no certificate).
 */
export function loadGrpcTls(settings: TlsSettings, role: TlsRole): GrpcTls {
  if (!settings.tls) return { enabled: false };
  const dir = resolve(settings.tlsDir);
  const fallback = (file: string) => (existsSync(join(dir, file)) ? join(dir, file) : undefined);
  const caFile = settings.tlsCa ?? fallback('ca.pem');
  const certFile = settings.tlsCert ?? fallback(`${role}.pem`);
  const keyFile = settings.tlsKey ?? fallback(`${role}-key.pem`);
  const server = role !== 'client';
  if (server && (!caFile || !certFile || !keyFile)) {
    const missing = [!caFile && 'TIDEMARK_TLS_CA', !certFile && 'TIDEMARK_TLS_CERT', !keyFile && 'TIDEMARK_TLS_KEY'].filter(Boolean).join(', ');
    throw new ConfigError(
      `TLS is on (the default) but the ${role} has no ${missing} and ${dir} holds no ${role} certificate; nothing was started. ` +
        'Set TIDEMARK_TLS_CA, TIDEMARK_TLS_CERT and TIDEMARK_TLS_KEY (docs/SECURITY.md#transport-security), ' +
        'or generate a local CA into the TLS directory with "tidemark tls init" ("tidemark cluster up" does it on its own), ' +
        'or, for development only, set TIDEMARK_TLS=off (plaintext, listening on loopback).',
    );
  }
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new ConfigError(`a client certificate needs both TIDEMARK_TLS_CERT and TIDEMARK_TLS_KEY; only ${certFile ? 'the certificate' : 'the key'} is set. Set both, or neither.`);
  }
  const cert = certFile ? readPem(certFile, 'certificate', 'TIDEMARK_TLS_CERT') : undefined;
  const key = keyFile ? readPem(keyFile, 'private key', 'TIDEMARK_TLS_KEY') : undefined;
  const roleName = role === 'coordinator' ? settings.tlsCoordinatorName : role === 'worker' ? settings.tlsWorkerName : undefined;
  const certificateExpiry = cert && key ? checkCertificate(cert, key, certFile!, role, roleName) : undefined;
  return {
    enabled: true,
    ca: caFile ? readPem(caFile, 'CA certificate', 'TIDEMARK_TLS_CA') : undefined,
    cert,
    key,
    coordinatorName: settings.tlsCoordinatorName,
    workerName: settings.tlsWorkerName,
    certificateExpiry,
  };
}

/**
 * Finds at start-up what would otherwise fail every handshake later with an opaque error: a key
 * that is not the certificate's, a certificate out of its validity period, and a service's
 * certificate without its role's name (its peers would refuse it). Returns when it expires.
 */
function checkCertificate(cert: Buffer, key: Buffer, certFile: string, role: TlsRole, roleName: string | undefined): Date {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new ConfigError(`${certFile} (TIDEMARK_TLS_CERT) is not a PEM certificate: ${errorMessage(err)}; nothing was started`, { cause: err });
  }
  let matches: boolean;
  try {
    matches = x509.checkPrivateKey(createPrivateKey(key));
  } catch (err) {
    throw new ConfigError(`the private key of ${certFile} (TIDEMARK_TLS_KEY) is not a PEM private key: ${errorMessage(err)}; nothing was started`, { cause: err });
  }
  if (!matches) throw new ConfigError(`the private key (TIDEMARK_TLS_KEY) is not the key of the certificate ${certFile} (TIDEMARK_TLS_CERT); nothing was started. Give the key the certificate was issued for.`);
  const now = Date.now();
  const notAfter = new Date(x509.validTo);
  if (notAfter.getTime() < now) throw new ConfigError(`the certificate ${certFile} (TIDEMARK_TLS_CERT) expired on ${notAfter.toISOString()}; nothing was started. Issue a new one.`);
  if (new Date(x509.validFrom).getTime() > now) {
    throw new ConfigError(`the certificate ${certFile} (TIDEMARK_TLS_CERT) is not valid before ${new Date(x509.validFrom).toISOString()}; nothing was started. Check this machine's clock.`);
  }
  if (roleName !== undefined && !identityHasName(identityOfCertificate(x509.raw), roleName)) {
    const setting = role === 'coordinator' ? 'TIDEMARK_TLS_COORDINATOR_NAME' : 'TIDEMARK_TLS_WORKER_NAME';
    throw new ConfigError(
      `the ${role}'s certificate ${certFile} carries ${describeIdentity(identityOfCertificate(x509.raw)).replace(/^a certificate naming /, 'the names ')}, not ${roleName}: ` +
        `its peers would refuse it; nothing was started. Issue one naming ${roleName} (docs/SECURITY.md#your-own-ca), or set ${setting} on every process.`,
    );
  }
  return notAfter;
}

/** A certificate expiring within this long is warned about at start-up. */
export const EXPIRY_WARNING_MS = 30 * 86_400_000;

/** A warning when this process's certificate expires within EXPIRY_WARNING_MS; undefined otherwise. */
export function expiryWarning(tls: GrpcTls, nowMs = Date.now()): string | undefined {
  if (!tls.enabled || !tls.certificateExpiry) return undefined;
  const left = tls.certificateExpiry.getTime() - nowMs;
  if (left > EXPIRY_WARNING_MS) return undefined;
  return `this process's TLS certificate (TIDEMARK_TLS_CERT) expires on ${tls.certificateExpiry.toISOString()}, in ${Math.max(0, Math.floor(left / 86_400_000))} day(s): issue a new one and restart before then, or its peers will refuse it`;
}

/** What a verified peer certificate says about who holds it. */
export interface CertificateIdentity {
  /** The subject's common name, if any. */
  commonName?: string;
  /** DNS names of the subject alternative name. */
  dnsNames: string[];
  /** URIs of the subject alternative name (e.g. SPIFFE ids). */
  uris: string[];
  /** SHA-256 fingerprint of the certificate, `AA:BB:...`. */
  fingerprint256: string;
}

function splitAltNames(altNames: string | undefined): Array<[string, string]> {
  if (!altNames) return [];
  return altNames
    .split(/,\s*/)
    .map((entry) => {
      const colon = entry.indexOf(':');
      return [entry.slice(0, colon).trim(), entry.slice(colon + 1).trim().replace(/^"(.*)"$/, '$1')] as [string, string];
    })
    .filter(([kind]) => kind.length > 0);
}

/** The identity of a certificate (DER bytes). */
export function identityOfCertificate(raw: Buffer): CertificateIdentity {
  const cert = new X509Certificate(raw);
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1];
  const alt = splitAltNames(cert.subjectAltName);
  return {
    commonName: cn,
    dnsNames: alt.filter(([kind]) => kind === 'DNS').map(([, value]) => value),
    uris: alt.filter(([kind]) => kind === 'URI').map(([, value]) => value),
    fingerprint256: cert.fingerprint256,
  };
}

/**
 * Whether the identity carries `name`: among its DNS names, or as its CN when it has no DNS name
 * (the rule TLS hostname checks follow). Exact, case-insensitive; no wildcards: a role is a name,
 * not a pattern.
 */
export function identityHasName(identity: CertificateIdentity, name: string): boolean {
  const wanted = name.toLowerCase();
  if (identity.dnsNames.length > 0) return identity.dnsNames.some((n) => n.toLowerCase() === wanted);
  return identity.commonName?.toLowerCase() === wanted;
}

/** How an identity reads in an error: its names, never anything secret. */
export function describeIdentity(identity: CertificateIdentity | undefined): string {
  if (!identity) return 'no verified certificate';
  const names = identity.dnsNames.length > 0 ? identity.dnsNames.join(', ') : (identity.commonName ?? 'no name');
  return `a certificate naming ${names}`;
}

/** Any grpc-js server call (unary, streaming): what certificateIdentity reads. */
export interface CallWithAuthContext {
  getAuthContext(): { transportSecurityType?: string; sslPeerCertificate?: PeerCertificate } | null;
}

/**
 * The identity of the caller's client certificate, as verified by the TLS handshake against the
 * server's CA: its CN, DNS and URI subject alternative names. Undefined when the call is
 * plaintext, or the caller sent no certificate, or one the CA did not sign (a server that only
 * asks for certificates lets such callers through, unidentified).
 */
export function certificateIdentity(call: CallWithAuthContext): CertificateIdentity | undefined {
  const context = call.getAuthContext();
  const peer = context?.sslPeerCertificate;
  if (context?.transportSecurityType !== 'ssl' || !peer?.raw) return undefined;
  return identityOfCertificate(peer.raw);
}

/**
 * Server credentials: plaintext when TLS is off. With TLS, callers must present a certificate of
 * the CA (`clientCertificates: 'required'`, the worker), or are asked for one and may go without
 * (`'optional'`, the admin API, whose callers may authenticate otherwise).
 */
export function serverCredentials(tls: GrpcTls, clientCertificates: 'required' | 'optional'): grpc.ServerCredentials {
  if (!tls.enabled) return grpc.ServerCredentials.createInsecure();
  if (!tls.cert || !tls.key) throw new ConfigError('a TLS server needs a certificate and a key (TIDEMARK_TLS_CERT, TIDEMARK_TLS_KEY)');
  if (clientCertificates === 'required') {
    if (!tls.ca) throw new ConfigError('a server that requires client certificates needs the CA that signs them (TIDEMARK_TLS_CA)');
    return grpc.ServerCredentials.createSsl(tls.ca, [{ cert_chain: tls.cert, private_key: tls.key }], true);
  }
  // createSsl cannot ask for a certificate without requiring it; a certificate provider can. The
  // provider is passed as both the identity and the CA provider (grpc-js 1.14 swaps their order).
  const provider = staticCertificates(tls.ca, tls.cert, tls.key);
  return grpc.experimental.createCertificateProviderServerCredentials(provider, provider, false);
}

/**
 * Certificates that never change. Listeners hear of them on the next microtask, as from a file
 * watcher: grpc-js registers its server's watcher only after adding these listeners, and an
 * update it does not hear leaves the server dropping every connection.
 */
function staticCertificates(ca: Buffer | undefined, cert: Buffer, key: Buffer): grpc.experimental.CertificateProvider {
  return {
    addCaCertificateListener: (listener) => queueMicrotask(() => listener(ca ? { caCertificate: ca } : null)),
    removeCaCertificateListener: () => {},
    addIdentityCertificateListener: (listener) => queueMicrotask(() => listener({ certificate: cert, privateKey: key })),
    removeIdentityCertificateListener: () => {},
  };
}

/**
 * Channel credentials for calling a server whose certificate must carry `expectedName` (instead
 * of the address's host name: a role, not a host). Plaintext when TLS is off.
 */
export function channelCredentials(tls: GrpcTls, expectedName: (tls: Extract<GrpcTls, { enabled: true }>) => string): grpc.ChannelCredentials {
  if (!tls.enabled) return grpc.credentials.createInsecure();
  const name = expectedName(tls);
  return grpc.credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null, {
    checkServerIdentity: (_host: string, cert: PeerCertificate) => {
      const identity = cert.raw ? identityOfCertificate(cert.raw) : undefined;
      if (identity && identityHasName(identity, name)) return undefined;
      return new Error(`the server presented ${describeIdentity(identity)}, not one naming ${name}: refusing to talk to it`);
    },
  });
}

/** A channel's credentials and options (clientChannelOptions, plus the TLS server name). */
export interface SecureChannel {
  credentials: grpc.ChannelCredentials;
  options: grpc.ChannelOptions;
}

function secureChannel(tls: GrpcTls, expectedName: (tls: Extract<GrpcTls, { enabled: true }>) => string): SecureChannel {
  if (!tls.enabled) return { credentials: grpc.credentials.createInsecure(), options: clientChannelOptions };
  return {
    credentials: channelCredentials(tls, expectedName),
    // The name sent in SNI: the role, not the address (an IP address there is not allowed, RFC 6066).
    options: { ...clientChannelOptions, 'grpc.ssl_target_name_override': expectedName(tls) },
  };
}

/** The channel to the coordinator's admin API (CLI, client library). */
export const coordinatorChannel = (tls: GrpcTls): SecureChannel => secureChannel(tls, (t) => t.coordinatorName);
/** The channel to a worker's service (the coordinator). */
export const workerChannel = (tls: GrpcTls): SecureChannel => secureChannel(tls, (t) => t.workerName);

/**
 * A call guard for `startServer`: with TLS, only a caller whose verified certificate carries
 * `name` is served; the reason for refusing anyone else. Without TLS it lets every call through
 * (plaintext development, where the listen address is loopback).
 */
export function onlyPeerNamed(tls: GrpcTls, name: string, service: string): ((call: CallWithAuthContext) => string | undefined) | undefined {
  if (!tls.enabled) return undefined;
  return (call) => {
    const identity = certificateIdentity(call);
    if (identity && identityHasName(identity, name)) return undefined;
    return `the ${service} serves only callers with a certificate naming ${name}; this caller presented ${describeIdentity(identity)}. Nothing was done.`;
  };
}
