/**
 * The setup most cluster tests share: a fresh vhost with a direct exchange and queues bound to it,
 * a fresh cluster (file store, 1 s discovery) protecting `<vhost>:<exchange>-*`, started once every
 * queue is assigned to a worker. `stop` removes the cluster and the vhost.
 */
import { declareBoundQueues } from './broker.js';
import { startTestCluster, type TestCluster, type TestClusterOptions } from './cluster.js';
import { createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from './services.js';

export interface ProtectedVhostOptions {
  /** Name of the exchange, and the prefix of every queue name (`<exchange>-...`). */
  exchange: string;
  queues: ReadonlyArray<{ name: string; type: string }>;
  workers: number;
  processEnv?: TestClusterOptions['processEnv'];
  /** Every process serves metrics (TestClusterOptions.metrics). @default false */
  metrics?: boolean;
}

export interface ProtectedVhost {
  services: TestServices;
  vhost: string;
  cluster: TestCluster;
  stop(): Promise<void>;
}

export async function startProtectedVhost(options: ProtectedVhostOptions): Promise<ProtectedVhost> {
  const { exchange, queues } = options;
  const misnamed = queues.filter((q) => !q.name.startsWith(`${exchange}-`));
  if (misnamed.length > 0) throw new Error(`queue names must start with "${exchange}-" to be protected: ${misnamed.map((q) => q.name).join(', ')}`);
  const services = await testServices();
  const vhost = uniqueName(`tm-${exchange}`);
  await createTestVhost(services.managementUrl, vhost);
  let cluster: TestCluster | undefined;
  const stop = async () => {
    await cluster?.stop();
    await deleteTestVhost(services.managementUrl, vhost);
  };
  try {
    await declareBoundQueues(services.amqpUrl, vhost, exchange, queues);
    cluster = await startTestCluster({
      services,
      namespace: uniqueName('tm'),
      protect: `${vhost}:${exchange}-*`,
      store: { kind: 'file' },
      workers: options.workers,
      extraEnv: { TIDEMARK_DISCOVERY_INTERVAL: '1s' },
      processEnv: options.processEnv,
      metrics: options.metrics,
    });
    await cluster.waitForStatus(
      (s) => s.protectedQueues === queues.length && s.workers.reduce((n, w) => n + w.queues, 0) === queues.length,
      `${queues.length} queue(s) assigned`,
    );
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
  return { services, vhost, cluster, stop };
}
