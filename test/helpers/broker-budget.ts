/**
 * How many protected queues a test may create on the shared broker: the broker resource guard's
 * own budget (services/coordinator/resource-guard.ts, default limits) with the source queue
 * counted on top of its journal. A test sized this way fits on a broker with the default 1,024
 * open files as well as on one with 20,000, and never leaves the guard's margin.
 */
import { ManagementClient } from '../../services/core/amqp/management-client.js';
import { journalBudget } from '../../services/coordinator/resource-guard.js';
import { configSchema } from '../../services/core/infrastructure/config.js';

/** Open files a test's source queue may hold beside its journal (a classic queue's index under traffic). */
const SOURCE_QUEUE_FD_COST = 1;

export interface QueueAllowance {
  /** Queues to create: `wanted`, or fewer if the broker has no room for that many. */
  count: number;
  /** What the broker allows and why, for the test's output. */
  note: string;
}

/** The number of protected queues (up to `wanted`) the broker of `managementUrl` has room for now. */
export async function queuesTheBrokerAllows(managementUrl: string, wanted: number): Promise<QueueAllowance> {
  const defaults = configSchema.parse({});
  const perQueue = defaults.journalFdCost + SOURCE_QUEUE_FD_COST;
  const nodes = await new ManagementClient(managementUrl).nodes();
  const budget = journalBudget(
    nodes,
    {
      fdFraction: defaults.guardFdFraction,
      memFraction: defaults.guardMemFraction,
      diskMargin: defaults.guardDiskMargin,
      journalFdCost: perQueue,
      maxJournals: 0,
    },
    { journals: 0, pending: 0 },
  );
  const count = Math.min(wanted, budget.allowed);
  const files = nodes.map((n) => `${n.name} ${n.fdUsed}/${n.fdTotal} open files`).join(', ');
  const note =
    count === wanted
      ? `${wanted} queues fit on the broker (${files}; ${perQueue} files per protected queue)`
      : `the broker has room for ${budget.allowed} of the ${wanted} queues wanted (${files}; ${perQueue} files per protected queue): running ${count}. ${budget.reason.message}`;
  return { count, note };
}
