/**
 * What a coordinator is made of, and opening it from the configuration: the store, Redis and the
 * clients built on them (lease, decision log, membership, catalog), the broker connections and
 * management client, and discovery with the resource guard and journal retention it admits
 * journals through. Nothing here runs yet: Coordinator.start() starts the work.
 *
 * - a connect that does not answer is given up when `signal` aborts (stopped while starting);
 * - when Redis cannot be opened the store is closed again, so a failed start leaves no connection
 *   keeping the process alive (broker connections open only when first used).
 */
import type { Redis } from 'ioredis';
import {
  Catalog,
  type Clock,
  type Config,
  DecisionLog,
  errorMessage,
  firehoseVhostsOf,
  type GrpcTls,
  loadBackendTls,
  loadGrpcTls,
  type Logger,
  Membership,
  ProtectionPolicy,
  systemClock,
} from '../core/index.js';
import { configureAmqpTls, ManagementClient, VhostConnections } from '../core/amqp/index.js';
import { openRedis } from '../core/redis/index.js';
import { type ObjectStore, openStoreRetrying } from '../core/store/index.js';
import { Discovery } from './discovery.js';
import { JournalRetention } from './journal-retention.js';
import { LeaderLease } from './leader-lease.js';
import { ResourceGuard } from './resource-guard.js';
import { ShedJournals } from './shed-journals.js';

export interface CoordinatorParts {
  config: Config;
  log: Logger;
  store: ObjectStore;
  catalog: Catalog;
  redis: Redis;
  lease: LeaderLease;
  decisions: DecisionLog;
  membership: Membership;
  connections: VhostConnections;
  management: ManagementClient;
  discovery: Discovery;
  /** The broker resource guard discovery admits new journals through; absent in some tests. */
  guard?: ResourceGuard;
  /** The journal retention discovery applies; absent in some tests. */
  retention?: JournalRetention;
  /** What the leader's decisions read the time from (lease, schedule, rounds). @default systemClock */
  clock?: Clock;
  /**
   * The coordinator's certificate material: its admin API's server certificate, and the client
   * certificate it shows workers (docs/SECURITY.md#transport-security). @default plaintext
   */
  tls?: GrpcTls;
}

/** Opens the store and Redis, then builds the parts on them. */
export async function openCoordinatorParts(config: Config, log: Logger, signal?: AbortSignal, clock: Clock = systemClock): Promise<CoordinatorParts> {
  // First: a missing certificate is a configuration error, found before anything is opened.
  const tls = loadGrpcTls(config, 'coordinator');
  const backends = loadBackendTls(config);
  configureAmqpTls(config.amqpUrl, backends.amqp, backends.amqpExternal);
  const store = await openStoreRetrying(config, signal, (err, delayMs) => log.warn('store not ready; retrying', { retryMs: delayMs, err: errorMessage(err) }));
  let redis: Redis;
  try {
    redis = await openRedis(config.redisUrl, log.child('redis'), signal, backends.redis);
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
  const connections = new VhostConnections(config.amqpUrl, log.child('amqp'), `tidemark coordinator ${config.id}`);
  const management = new ManagementClient(config.managementUrl, { ca: backends.management?.ca });
  const guard = new ResourceGuard({
    management,
    limits: {
      fdFraction: config.guardFdFraction,
      memFraction: config.guardMemFraction,
      diskMargin: config.guardDiskMargin,
      journalFdCost: config.journalFdCost,
      maxJournals: config.maxJournals,
    },
    log: log.child('guard'),
    clock,
  });
  const retention = new JournalRetention(
    { diskShare: config.journalDiskShare, minBytes: config.journalMinBytes, maxBytes: config.journalMaxBytes, diskMargin: config.guardDiskMargin },
    log.child('retention'),
  );
  return {
    config,
    log,
    tls,
    store,
    catalog: new Catalog(store),
    redis,
    lease: new LeaderLease(redis, config.namespace, config.id, config.leaseTime, clock),
    decisions: new DecisionLog(redis, config.namespace),
    membership: new Membership(redis, config.namespace, config.leaseTime, clock),
    connections,
    management,
    discovery: new Discovery({
      namespace: config.namespace,
      journalMaxAge: config.journalMaxAge,
      journalMaxBytes: config.journalMaxBytes,
      management,
      connections,
      policy: new ProtectionPolicy(config.protect, config.namespace),
      firehoseVhosts: firehoseVhostsOf(config.firehoseVhosts),
      guard,
      retention,
      shedLog: new ShedJournals(redis, config.namespace),
      clock,
      log: log.child('discovery'),
    }),
    guard,
    retention,
    clock,
  };
}
