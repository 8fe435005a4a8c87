/**
 * Configuration is read once, at the edge: defaults, then the environment, then a JSON config
 * file, then command-line flags (each overrides the one before). The result is validated here and
 * passed down; nothing deeper reads process.env.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import { parseDuration } from '../format/duration.js';
import { ConfigError } from '../errors.js';
import { parseFailpoints } from './failpoints.js';
import { SEGMENT_CODEC_CHOICES } from '../format/segment-codec.js';

const duration = z.union([z.string(), z.number()]).transform((value, ctx) => {
  try {
    return parseDuration(value);
  } catch (err) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: (err as Error).message });
    return z.NEVER;
  }
});

/** A URL whose scheme is one of `schemes` (catches "localhost:5672", which parses as a URL). */
const urlWith = (...schemes: string[]) =>
  z
    .string()
    .url()
    .refine((value) => URL.canParse(value) && schemes.includes(new URL(value).protocol.replace(/:$/, '')), {
      message: `must be a URL starting with ${schemes.map((s) => `${s}://`).join(' or ')}`,
    });

const count = z.union([z.string(), z.number()]).pipe(z.coerce.number().int().positive());
const wholeNumber = z.union([z.string(), z.number()]).pipe(z.coerce.number().int().nonnegative());
/** A share of a broker resource, above 0 and at most 1. */
/** true/false (also 1/0, yes/no, on/off, any case), from the environment or a config file. */
const flag = z.union([z.boolean(), z.string()]).transform((value, ctx) => {
  if (typeof value === 'boolean') return value;
  const text = value.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(text)) return true;
  if (['false', '0', 'no', 'off'].includes(text)) return false;
  ctx.addIssue({ code: z.ZodIssueCode.custom, message: `"${value}" is not true or false` });
  return z.NEVER;
});
const fraction = z.union([z.string(), z.number()]).pipe(z.coerce.number().gt(0, 'must be above 0').lte(1, 'must be at most 1 (a share of the limit)'));

export const configSchema = z.object({
  /** AMQP URL of the protected broker. @default amqp://guest:guest@localhost:5672 */
  amqpUrl: urlWith('amqp', 'amqps').default('amqp://guest:guest@localhost:5672'),
  /** RabbitMQ management API base URL, credentials in it. @default http://guest:guest@localhost:15672 */
  managementUrl: urlWith('http', 'https').default('http://guest:guest@localhost:15672'),
  /** Redis URL for leases, membership, epochs and decisions. @default redis://localhost:6379 */
  redisUrl: urlWith('redis', 'rediss').default('redis://localhost:6379'),
  /** Object store: `s3://bucket/prefix` or `file:///dir` (a relative `file://dir` is resolved). @default file://.tidemark/store */
  store: z.string().default('file://.tidemark/store'),
  /** S3 endpoint URL, e.g. http://localhost:9000. @default AWS when unset */
  s3Endpoint: urlWith('http', 'https').optional(),
  /** S3 access key. */
  s3AccessKey: z.string().optional(),
  /** S3 secret key. */
  s3SecretKey: z.string().optional(),
  /**
   * Encryption at rest (docs/SECURITY.md): the master key itself, 32 bytes in base64 or hex.
   * Prefer masterKeyFile; never put it in a config file. @default unset: the store is written in plaintext
   */
  masterKey: z.string().optional(),
  /** A file (owner-only, mode 0600) holding the master key, 32 bytes in base64 or hex. @default unset */
  masterKeyFile: z.string().optional(),
  /**
   * Comma-separated files of previous master keys, used only to read data keys they still wrap
   * while `tidemark keys rotate` re-wraps them. @default none
   */
  masterKeyPreviousFiles: z.string().optional(),
  /** S3 region. @default us-east-1 */
  s3Region: z.string().default('us-east-1'),
  /**
   * Coordinator address for clients and the CLI, or a comma-separated list of them (leader and
   * standbys): calls only the leader serves go to the leader, found through any of them
   * (docs/API.md#finding-the-leader). @default localhost:7700
   */
  coordinator: z
    .string()
    .regex(/^\s*(\[[0-9a-fA-F:]+\]|[^:\s,]+):\d{1,5}\s*(,\s*(\[[0-9a-fA-F:]+\]|[^:\s,]+):\d{1,5}\s*)*$/, 'must be host:port, or a comma-separated list of them, e.g. localhost:7700 or c1:7700,c2:7700')
    .default('localhost:7700'),
  /** Queues to protect: comma-separated `vhost:glob`, `!vhost:glob` excludes. @default nothing */
  protect: z.string().default(''),
  /**
   * Vhosts captured through the firehose tracer instead of bindings, comma-separated: their
   * default-exchange publishes are captured too, at the cost described in docs/OPERATIONS.md
   * ("Firehose capture"). @default none
   */
  firehoseVhosts: z.string().default(''),
  /** Prefix of every Redis key and RabbitMQ object Tidemark owns. @default tidemark */
  namespace: z
    .string()
    .regex(/^[a-z][a-z0-9-]{0,31}$/, 'namespace must be lowercase letters, digits and dashes, starting with a letter')
    .default('tidemark'),
  /**
   * Address a service listens on. @default coordinator: 0.0.0.0:7700 once TLS and authentication
   * are configured, else 127.0.0.1:7700; worker: 127.0.0.1:0
   */
  listen: z.string().optional(),
  /**
   * Address the coordinator or worker serves Prometheus metrics on, at GET /metrics, e.g. `0.0.0.0:9464`
   * (docs/OPERATIONS.md#metrics). @default unset: no metrics endpoint
   */
  metricsListen: z
    .string()
    .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'must be host:port, e.g. 0.0.0.0:9464')
    .optional(),
  /**
   * Address the coordinator serves its status page on (HTTPS with its server certificate; plain
   * HTTP only with TLS off), e.g. `127.0.0.1:7780` (docs/OPERATIONS.md#status-page).
   * @default unset: no status page
   */
  statusListen: z
    .string()
    .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'must be host:port, e.g. 127.0.0.1:7780')
    .optional(),
  /**
   * Address other processes use to reach this process: a worker's for the coordinator; a
   * coordinator's for clients, which standbys send to the leader. @default the listen address with
   * its bound port (the host name for 0.0.0.0)
   */
  advertise: z.string().optional(),
  /**
   * Address of a plaintext port serving only the gRPC health service (grpc.health.v1), for probes
   * that cannot present a client certificate, e.g. `0.0.0.0:7710` (docs/API.md#health). It tells
   * only SERVING or NOT_SERVING. @default unset: health is served only on the TLS port
   */
  healthListen: z
    .string()
    .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'must be host:port, e.g. 0.0.0.0:7710')
    .optional(),
  /** This process's id in membership and logs. @default hostname-pid */
  id: z.string().default(`${hostname()}-${process.pid}`),
  /** Time between scheduled checkpoint rounds; 0 turns the schedule off. @default 60s */
  interval: duration.default(60_000),
  /** How long a worker has to prepare before the round aborts. @default 15s */
  prepareTimeout: duration.default(15_000),
  /**
   * The longest a consumer may hold a message unacknowledged (docs/HEAD-AT-THE-CUT.md): a queue's
   * head at a cut is never later than where delivery stood this long before. 0 declares that
   * consumers acknowledge in order. @default 30m (RabbitMQ's consumer_timeout: a message held
   * longer is requeued by the broker, which the census sees)
   */
  headMaxHold: duration.default(30 * 60_000),
  /** Time between discovery passes over the broker's queues and bindings. @default 5s */
  discoveryInterval: duration.default(5_000),
  /** Lease time of the coordinator's leadership and of worker membership. @default 5s */
  leaseTime: duration.default(5_000),
  /** Every Nth checkpoint manifest is full (no chain); the rest are incremental. @default 16 */
  fullEvery: count.default(16),
  /**
   * All-or-nothing rounds: any queue that cannot take part (its worker votes NO for it, does not
   * answer, or no worker took it) aborts the round for every queue. Off, such a queue is carried
   * from its last good cut, marked outside the checkpoint's cut (G8, docs/PROTOCOL.md). @default false
   */
  strictRounds: flag.default(false),
  /**
   * Retention (docs/OPERATIONS.md#retention-and-garbage-collection): keep the newest N
   * checkpoints; 0 turns the rule off. A checkpoint any rule keeps is kept. @default 100
   */
  retainLast: wholeNumber.default(100),
  /** Retention: keep every checkpoint committed within this time; 0 turns the rule off. @default 7d */
  retainWithin: duration.default(7 * 86_400_000),
  /** Retention: keep the newest checkpoint of each of the last D UTC days that have one. @default 7 */
  retainDaily: wholeNumber.default(7),
  /** Retention: keep the newest checkpoint of each of the last W ISO weeks (UTC) that have one. @default 4 */
  retainWeekly: wholeNumber.default(4),
  /** Retention: keep the newest checkpoint of each of the last M UTC months that have one. @default 12 */
  retainMonthly: wholeNumber.default(12),
  /**
   * How long history is kept for `restore --history`: new full manifests may leave out records
   * captured before the newest checkpoint committed this long ago (never what a queue held at the
   * cut); 0 keeps all history. @default 7d
   */
  retainHistory: duration.default(7 * 86_400_000),
  /** The leader prunes (retention, then garbage collection) after a commit at most this often; 0: only on request. @default 10m */
  pruneInterval: duration.default(10 * 60_000),
  /**
   * Garbage collection never deletes an object written, or a checkpoint committed, less than this
   * long ago (at least twice prepareTimeout): a capture or round in flight may still need it. @default 15m
   */
  gcGrace: duration.default(15 * 60_000),
  /** A worker closes a segment at this many stored bytes of records. @default 4 MiB */
  segmentBytes: count.default(4 * 1024 * 1024),
  /**
   * How a worker compresses segments: `auto` (gzip when it shrinks the data and keeps up with the
   * queue's flow, identity otherwise), `gzip` (always, even if capture falls behind the journal),
   * or `identity` (never). docs/STORE-FORMAT.md#codecs. @default auto
   */
  segmentCodec: z.enum(SEGMENT_CODEC_CHOICES).default('auto'),
  /** A worker flushes buffered records to a segment at least this often. @default 1s */
  flushInterval: duration.default(1_000),
  /** Unconfirmed messages in flight per restoring queue. @default 256 */
  confirmWindow: count.default(256),
  /** Journal messages the broker sends a worker ahead of acknowledgement, per queue. @default 2000 */
  prefetch: count.default(2_000),
  /**
   * Most journal channels a worker opens on one AMQP connection; a vhost gets as many connections
   * as its captured queues need. Keep it under the broker's channel_max (2,047 by default). @default 1000
   */
  channelsPerConnection: count.default(1_000),
  /**
   * How long RabbitMQ keeps journal data (the stream's x-max-age). Checkpoints do not need it
   * (segments hold the data); a worker resuming after an outage longer than this finds a gap and
   * votes NO rather than checkpoint a hole. Fixed when a journal is created. @default 7D
   */
  journalMaxAge: z
    .string()
    .regex(/^\d+[YMDhms]$/, 'must be a RabbitMQ max-age such as 7D, 48h or 30m (units Y, M, D, h, m, s)')
    .default('7D'),
  /**
   * Most bytes RabbitMQ keeps of each journal (the stream's x-max-length-bytes), besides
   * `journalMaxAge`; 0 for no size bound. Bounds the broker disk a journal takes on a busy queue.
   * Data retention removes before capture read it is a gap: the capture stops and votes NO, never
   * checkpoints a hole. Fixed when a journal is created (docs/OPERATIONS.md#journal-size).
   * @default 0
   */
  journalMaxBytes: z.coerce.number().int().min(0).default(0),
  /**
   * Journal retention (docs/OPERATIONS.md#journal-retention): the share of each broker node's free
   * disk above `disk_free_limit` + `guardDiskMargin` that all journals together may keep. The
   * leader sets the bound per journal from it (a policy on the journals) as the disk changes.
   * @default 0.5
   */
  journalDiskShare: fraction.default(0.5),
  /**
   * Journal retention: the least each journal keeps. Below it, disk pressure stops protecting the
   * largest journal instead of shrinking them all. It must cover what a worker can lag behind.
   * @default 64 MiB
   */
  journalMinBytes: count.default(64 * 1024 ** 2),
  /**
   * Broker resource guard (docs/OPERATIONS.md#broker-resources): new journals are declared only
   * while every broker node's open files stay within this share of its limit (`fd_total`),
   * counting `journalFdCost` per new journal. Journals already declared are never removed.
   * @default 0.8
   */
  guardFdFraction: fraction.default(0.8),
  /**
   * Broker resource guard: new journals only while every node's memory stays within this share of
   * its high watermark (`mem_limit`, where RabbitMQ's memory alarm blocks publishers). @default 0.8
   */
  guardMemFraction: fraction.default(0.8),
  /**
   * Broker resource guard: new journals only while every node's free disk is this many bytes above
   * its `disk_free_limit` (where RabbitMQ's disk alarm blocks publishers). @default 1 GiB
   */
  guardDiskMargin: wholeNumber.default(1024 ** 3),
  /**
   * Open files one protected queue's journal costs the broker: 2 for the stream's segment and
   * index, 1 for the worker reading it, 1 of margin for traffic (measured in docs/SCALE.md).
   * @default 4
   */
  journalFdCost: count.default(4),
  /** Most journals this installation keeps on the broker; 0 leaves it to the guard's shares. @default 0 */
  maxJournals: wholeNumber.default(0),
  /**
   * Injected faults for reliability tests (docs/RELIABILITY.md), e.g.
   * `worker.after-vote=crash,coordinator.after-decision=stall:20s@2`. Never set it in production.
   * @default none
   */
  failpoints: z
    .string()
    .default('')
    .superRefine((value, ctx) => {
      try {
        parseFailpoints(value);
      } catch (err) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: (err as Error).message });
      }
    }),
  /**
   * Admin API callers (docs/SECURITY.md#who-may-do-what): a file of lines `<role> <name> <sha256
   * of the token>`, roles read, operator or admin. @default unset: no token is accepted
   */
  authTokensFile: z.string().optional(),
  /**
   * Admin API callers given inline, as in authTokensFile, lines separated by newlines or `;`
   * (hashes only, so it may sit in the environment). Adds to authTokensFile. @default none
   */
  authTokens: z.string().default(''),
  /**
   * Admin API callers by client certificate: comma-separated `<certificate CN>=<role>`.
   * @default none
   */
  authCertRoles: z.string().default(''),
  /**
   * Development only: the admin API lets every caller do everything. Without it, a coordinator
   * with neither authTokensFile nor authCertRoles refuses to start. @default false
   */
  authDisabled: flag.default(false),
  /**
   * Restore targets by name (docs/SECURITY.md#restore-targets): a JSON file
   * `{"<name>": {"amqpUrl": "amqps://user@host:5671", "passwordFile": "...", "passwordEnv": "..."}}`.
   * The operator role may restore only into these and the source broker. @default none
   */
  restoreTargetsFile: z.string().optional(),
  /**
   * File holding the bearer token Prometheus must send to a metrics endpoint bound to a
   * non-loopback address (docs/OPERATIONS.md#metrics). @default unset: metrics only on loopback
   */
  metricsTokenFile: z.string().optional(),
  /** Least severe log level printed to stderr: debug, info, warn or error. @default info */
  logLevel: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
  /** Log lines: json (one object per line), pretty (for people), auto (pretty when stderr is a terminal, else json). @default auto */
  logFormat: z.enum(['auto', 'json', 'pretty']).default('auto'),
  // Transport security of gRPC (docs/SECURITY.md#transport-security).
  /** TLS on every gRPC server and client; off (TIDEMARK_TLS=off) only for development: plaintext, loopback by default. @default true */
  tls: flag.default(true),
  /** CA certificate file (PEM) that peers' certificates must chain to. @default <tlsDir>/ca.pem if present */
  tlsCa: z.string().min(1).optional(),
  /** This process's certificate file (PEM): server certificate of a service, client certificate of the CLI. @default <tlsDir>/<role>.pem if present */
  tlsCert: z.string().min(1).optional(),
  /** Private key file (PEM) of tlsCert; never logged. @default <tlsDir>/<role>-key.pem if present */
  tlsKey: z.string().min(1).optional(),
  /** Directory of the local CA that `tidemark cluster up` generates; fills in unset tlsCa/tlsCert/tlsKey. @default .tidemark/tls */
  tlsDir: z.string().min(1).default('.tidemark/tls'),
  /** Name (DNS SAN, or CN) the coordinator's certificate carries: workers serve only it, clients accept only it. @default tidemark-coordinator */
  tlsCoordinatorName: z.string().min(1).default('tidemark-coordinator'),
  /** Name (DNS SAN, or CN) every worker's certificate carries: the coordinator talks only to it. @default tidemark-worker */
  tlsWorkerName: z.string().min(1).default('tidemark-worker'),
  // TLS to RabbitMQ, Redis and S3 (infrastructure/backend-tls.ts); the URL scheme turns TLS on.
  /** CA file (PEM) for amqps:// connections to the protected broker. @default the system's roots */
  amqpTlsCa: z.string().min(1).optional(),
  /** Client certificate file (PEM) for amqps:// connections to the protected broker. @default none */
  amqpTlsCert: z.string().min(1).optional(),
  /** Private key file (PEM) of amqpTlsCert. @default none */
  amqpTlsKey: z.string().min(1).optional(),
  /** Authenticate to the protected broker by client certificate (SASL EXTERNAL), not the URL's password. @default false */
  amqpExternalAuth: flag.default(false),
  /** CA file (PEM) for an https:// management API. @default the system's roots */
  managementTlsCa: z.string().min(1).optional(),
  /** CA file (PEM) for rediss:// connections. @default the system's roots */
  redisTlsCa: z.string().min(1).optional(),
  /** Client certificate file (PEM) for rediss:// connections. @default none */
  redisTlsCert: z.string().min(1).optional(),
  /** Private key file (PEM) of redisTlsCert. @default none */
  redisTlsKey: z.string().min(1).optional(),
  /** CA file (PEM) for an https:// S3 endpoint. @default the system's roots */
  s3TlsCa: z.string().min(1).optional(),
});

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

/** Environment variables and the config keys they set. */
export const environmentKeys: Record<string, keyof Config> = {
  TIDEMARK_AMQP_URL: 'amqpUrl',
  TIDEMARK_MANAGEMENT_URL: 'managementUrl',
  TIDEMARK_REDIS_URL: 'redisUrl',
  TIDEMARK_STORE: 'store',
  TIDEMARK_S3_ENDPOINT: 's3Endpoint',
  TIDEMARK_S3_ACCESS_KEY: 's3AccessKey',
  TIDEMARK_S3_SECRET_KEY: 's3SecretKey',
  TIDEMARK_S3_REGION: 's3Region',
  TIDEMARK_MASTER_KEY: 'masterKey',
  TIDEMARK_MASTER_KEY_FILE: 'masterKeyFile',
  TIDEMARK_MASTER_KEY_PREVIOUS_FILES: 'masterKeyPreviousFiles',
  TIDEMARK_COORDINATOR: 'coordinator',
  TIDEMARK_PROTECT: 'protect',
  TIDEMARK_FIREHOSE_VHOSTS: 'firehoseVhosts',
  TIDEMARK_NAMESPACE: 'namespace',
  TIDEMARK_INTERVAL: 'interval',
  TIDEMARK_PREPARE_TIMEOUT: 'prepareTimeout',
  TIDEMARK_DISCOVERY_INTERVAL: 'discoveryInterval',
  TIDEMARK_HEAD_MAX_HOLD: 'headMaxHold',
  TIDEMARK_LEASE_TIME: 'leaseTime',
  TIDEMARK_ID: 'id',
  TIDEMARK_LOG_LEVEL: 'logLevel',
  TIDEMARK_LOG_FORMAT: 'logFormat',
  TIDEMARK_JOURNAL_MAX_AGE: 'journalMaxAge',
  TIDEMARK_JOURNAL_MAX_BYTES: 'journalMaxBytes',
  TIDEMARK_JOURNAL_DISK_SHARE: 'journalDiskShare',
  TIDEMARK_JOURNAL_MIN_BYTES: 'journalMinBytes',
  TIDEMARK_FAILPOINTS: 'failpoints',
  TIDEMARK_CONFIRM_WINDOW: 'confirmWindow',
  TIDEMARK_METRICS_LISTEN: 'metricsListen',
  TIDEMARK_HEALTH_LISTEN: 'healthListen',
  TIDEMARK_ADVERTISE: 'advertise',
  TIDEMARK_CHANNELS_PER_CONNECTION: 'channelsPerConnection',
  TIDEMARK_SEGMENT_CODEC: 'segmentCodec',
  TIDEMARK_GUARD_FD_FRACTION: 'guardFdFraction',
  TIDEMARK_GUARD_MEM_FRACTION: 'guardMemFraction',
  TIDEMARK_GUARD_DISK_MARGIN: 'guardDiskMargin',
  TIDEMARK_JOURNAL_FD_COST: 'journalFdCost',
  TIDEMARK_MAX_JOURNALS: 'maxJournals',
  TIDEMARK_STRICT_ROUNDS: 'strictRounds',
  TIDEMARK_RETAIN_LAST: 'retainLast',
  TIDEMARK_RETAIN_WITHIN: 'retainWithin',
  TIDEMARK_RETAIN_DAILY: 'retainDaily',
  TIDEMARK_RETAIN_WEEKLY: 'retainWeekly',
  TIDEMARK_RETAIN_MONTHLY: 'retainMonthly',
  TIDEMARK_RETAIN_HISTORY: 'retainHistory',
  TIDEMARK_PRUNE_INTERVAL: 'pruneInterval',
  TIDEMARK_GC_GRACE: 'gcGrace',
  TIDEMARK_FULL_EVERY: 'fullEvery',
  TIDEMARK_TLS: 'tls',
  TIDEMARK_TLS_CA: 'tlsCa',
  TIDEMARK_TLS_CERT: 'tlsCert',
  TIDEMARK_TLS_KEY: 'tlsKey',
  TIDEMARK_TLS_DIR: 'tlsDir',
  TIDEMARK_TLS_COORDINATOR_NAME: 'tlsCoordinatorName',
  TIDEMARK_TLS_WORKER_NAME: 'tlsWorkerName',
  TIDEMARK_AMQP_TLS_CA: 'amqpTlsCa',
  TIDEMARK_AMQP_TLS_CERT: 'amqpTlsCert',
  TIDEMARK_AMQP_TLS_KEY: 'amqpTlsKey',
  TIDEMARK_AMQP_EXTERNAL_AUTH: 'amqpExternalAuth',
  TIDEMARK_MANAGEMENT_TLS_CA: 'managementTlsCa',
  TIDEMARK_REDIS_TLS_CA: 'redisTlsCa',
  TIDEMARK_REDIS_TLS_CERT: 'redisTlsCert',
  TIDEMARK_REDIS_TLS_KEY: 'redisTlsKey',
  TIDEMARK_S3_TLS_CA: 's3TlsCa',
  TIDEMARK_AUTH_TOKENS_FILE: 'authTokensFile',
  TIDEMARK_AUTH_TOKENS: 'authTokens',
  TIDEMARK_AUTH_CERT_ROLES: 'authCertRoles',
  TIDEMARK_AUTH_DISABLED: 'authDisabled',
  TIDEMARK_RESTORE_TARGETS: 'restoreTargetsFile',
  TIDEMARK_METRICS_TOKEN_FILE: 'metricsTokenFile',
  TIDEMARK_STATUS_LISTEN: 'statusListen',
};

export interface ConfigSources {
  env?: NodeJS.ProcessEnv;
  /** Path of a JSON file whose keys are config keys. */
  file?: string;
  /** Values from command-line flags; undefined values are ignored. */
  flags?: Record<string, unknown>;
}

export function loadConfig(sources: ConfigSources = {}): Config {
  const merged: Record<string, unknown> = {};
  for (const [variable, key] of Object.entries(environmentKeys)) {
    const value = sources.env?.[variable];
    if (value !== undefined && value !== '') merged[key] = value;
  }
  const file = sources.file ?? sources.env?.TIDEMARK_CONFIG;
  if (file) Object.assign(merged, readConfigFile(file));
  for (const [key, value] of Object.entries(sources.flags ?? {})) {
    if (value !== undefined && Object.hasOwn(configSchema.shape, key)) merged[key] = value;
  }
  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${describeKey(String(issue.path[0] ?? ''))}: ${issue.message}`);
    throw new ConfigError(`invalid configuration: ${problems.join('; ')}. Nothing was started or changed; fix the flag, config file or TIDEMARK_* variable named.`);
  }
  return { ...parsed.data, store: normalizeStoreUrl(parsed.data.store) };
}

/** Config keys the `tidemark` commands take as flags (services/cli/commands/); the rest have none. */
const FLAG_KEYS: ReadonlySet<string> = new Set([
  'amqpUrl', 'managementUrl', 'redisUrl', 'store', 's3Endpoint', 'coordinator', 'protect', 'namespace',
  'listen', 'advertise', 'healthListen', 'id', 'interval', 'prepareTimeout', 'logLevel',
  'tlsCa', 'tlsCert', 'tlsKey', 'statusListen',
]);

/**
 * "interval (--interval, TIDEMARK_INTERVAL)": every way an operator may have set a key; a key
 * with neither a flag nor a variable is only a config-file key.
 */
export function describeKey(key: string): string {
  if (!key) return 'config';
  const ways = [];
  if (FLAG_KEYS.has(key)) ways.push(`--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
  const variable = Object.entries(environmentKeys).find(([, k]) => k === key)?.[0];
  if (variable) ways.push(variable);
  return `${key} (${ways.length > 0 ? ways.join(', ') : 'config file only'})`;
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(`config file ${path} must hold a JSON object of config keys`);
  }
  const unknown = Object.keys(value).filter((key) => !Object.hasOwn(configSchema.shape, key));
  if (unknown.length > 0) {
    throw new ConfigError(`config file ${path} has unknown keys: ${unknown.join(', ')}; known keys: ${Object.keys(configSchema.shape).join(', ')}`);
  }
  return value as Record<string, unknown>;
}

/** Resolves a relative `file://dir` store against the working directory; checks the scheme. */
export function normalizeStoreUrl(store: string): string {
  if (store.startsWith('s3://')) {
    const rest = store.slice('s3://'.length);
    if (rest.length === 0 || rest.startsWith('/')) {
      throw new ConfigError(`store ${store} names no bucket: use s3://bucket or s3://bucket/prefix`);
    }
    return store.replace(/\/+$/, '');
  }
  if (store.startsWith('file://')) {
    const rest = store.slice('file://'.length);
    if (rest.length === 0) throw new ConfigError(`store ${store} names no directory: use file:///absolute/dir`);
    // Decode before re-encoding, so normalizing twice gives the same URL ("my%20store" stays
    // the directory "my store"); a relative file://dir is not a valid URL, so decode it by hand.
    let path: string;
    try {
      path = rest.startsWith('/') ? fileURLToPath(store) : decodeURIComponent(rest);
    } catch (err) {
      throw new ConfigError(`store ${store} is not a valid file URL: ${(err as Error).message}`, { cause: err });
    }
    return pathToFileURL(resolve(path)).href;
  }
  throw new ConfigError(`store ${store} is not supported: use s3://bucket/prefix or file:///dir`);
}
