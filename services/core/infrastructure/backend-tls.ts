/**
 * TLS to the systems Tidemark uses (docs/SECURITY.md#transport-security): a CA to trust, and a
 * client certificate and key, for RabbitMQ (AMQP, with EXTERNAL authentication by certificate),
 * Redis, and a CA for the management API and S3. Read once at start-up from files named in the
 * configuration; the key is never logged. TLS itself is chosen by the URL scheme (amqps://,
 * rediss://, https:// management and S3 endpoints); these settings say whom to trust and who Tidemark is.
 */
import { readFileSync } from 'node:fs';
import { ConfigError, errorMessage } from '../errors.js';
import type { Config } from './config.js';

/** Certificates for one TLS client, as Node's tls.connect takes them. */
export interface TlsMaterial {
  /** CA certificates (PEM) replacing the system's roots for this service. */
  ca?: Buffer;
  /** Client certificate chain (PEM). */
  cert?: Buffer;
  /** Its private key (PEM). */
  key?: Buffer;
}

function read(path: string | undefined, what: string, variable: string): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`cannot read the ${what} ${path} (${variable}): ${errorMessage(err)}; nothing was started. Fix the path or its permissions.`, { cause: err });
  }
}

/** Reads one service's files; undefined when none is set. A certificate needs its key and back. */
export function readTlsMaterial(files: { ca?: string; cert?: string; key?: string }, service: string, prefix: string): TlsMaterial | undefined {
  if (!files.ca && !files.cert && !files.key) return undefined;
  if (Boolean(files.cert) !== Boolean(files.key)) {
    throw new ConfigError(`${service} TLS needs both ${prefix}_CERT and ${prefix}_KEY for a client certificate; only ${files.cert ? 'the certificate' : 'the key'} is set. Set both, or neither.`);
  }
  return {
    ca: read(files.ca, `${service} CA certificate`, `${prefix}_CA`),
    cert: read(files.cert, `${service} client certificate`, `${prefix}_CERT`),
    key: read(files.key, `${service} client key`, `${prefix}_KEY`),
  };
}

/** The TLS material of every backend, read from the configuration. */
export interface BackendTls {
  amqp?: TlsMaterial;
  /** Authenticate to RabbitMQ with the client certificate (SASL EXTERNAL) instead of the URL's password. */
  amqpExternal: boolean;
  management?: TlsMaterial;
  redis?: TlsMaterial;
  s3?: TlsMaterial;
}

export type BackendTlsConfig = Pick<
  Config,
  'amqpTlsCa' | 'amqpTlsCert' | 'amqpTlsKey' | 'amqpExternalAuth' | 'managementTlsCa' | 'redisTlsCa' | 'redisTlsCert' | 'redisTlsKey' | 's3TlsCa'
>;

export function loadBackendTls(config: BackendTlsConfig): BackendTls {
  const amqp = readTlsMaterial({ ca: config.amqpTlsCa, cert: config.amqpTlsCert, key: config.amqpTlsKey }, 'AMQP', 'TIDEMARK_AMQP_TLS');
  if (config.amqpExternalAuth && !amqp?.cert) {
    throw new ConfigError('TIDEMARK_AMQP_EXTERNAL_AUTH authenticates to RabbitMQ with a client certificate: set TIDEMARK_AMQP_TLS_CERT and TIDEMARK_AMQP_TLS_KEY (and use an amqps:// URL)');
  }
  return {
    amqp,
    amqpExternal: config.amqpExternalAuth,
    management: readTlsMaterial({ ca: config.managementTlsCa }, 'management API', 'TIDEMARK_MANAGEMENT_TLS'),
    redis: readTlsMaterial({ ca: config.redisTlsCa, cert: config.redisTlsCert, key: config.redisTlsKey }, 'Redis', 'TIDEMARK_REDIS_TLS'),
    s3: readTlsMaterial({ ca: config.s3TlsCa }, 'S3', 'TIDEMARK_S3_TLS'),
  };
}
