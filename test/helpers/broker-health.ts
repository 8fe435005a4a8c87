/**
 * Whether a broker is still healthy: the management API answers, a vhost can be created and
 * deleted (what a RabbitMQ 3.10 node past its open-file limit stops doing, answering HTTP 500 until
 * it is restarted), no memory or disk alarm is up, and every node's open files are well below its
 * limit. The test run checks it at its end (global-setup.ts); tests that push the broker check it too.
 */
import { randomBytes } from 'node:crypto';
import { ManagementClient } from '../../services/core/amqp/management-client.js';

/** Open files above this share of a node's limit count as a problem: the next test could hit `emfile`. */
export const HEALTHY_FD_FRACTION = 0.8;

/** What is wrong with the broker behind `managementUrl`; empty when it is healthy. */
export async function brokerHealthProblems(managementUrl: string): Promise<string[]> {
  const management = new ManagementClient(managementUrl, { timeoutMs: 30_000 });
  const problems: string[] = [];
  try {
    await management.overview();
  } catch (err) {
    return [`the management API does not answer: ${(err as Error).message}`];
  }
  const scratch = `tm-health-${randomBytes(4).toString('hex')}`;
  try {
    await management.createVhost(scratch);
    await management.deleteVhost(scratch);
  } catch (err) {
    problems.push(`creating and deleting a scratch vhost failed (${(err as Error).message}); a node past its open-file limit (emfile) stays like this until RabbitMQ is restarted`);
    await management.deleteVhost(scratch).catch(() => {});
  }
  try {
    for (const n of await management.nodes()) {
      if (!n.running) problems.push(`node ${n.name} is not running`);
      if (n.memAlarm) problems.push(`memory alarm on node ${n.name}`);
      if (n.diskFreeAlarm) problems.push(`disk alarm on node ${n.name}`);
      if (n.fdUsed !== undefined && n.fdTotal !== undefined && n.fdUsed > HEALTHY_FD_FRACTION * n.fdTotal) {
        problems.push(`node ${n.name} has ${n.fdUsed} of its ${n.fdTotal} open files in use (a test left streams behind?)`);
      }
    }
  } catch (err) {
    problems.push(`cannot read the nodes' resources: ${(err as Error).message}`);
  }
  return problems;
}
