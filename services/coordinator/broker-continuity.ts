/**
 * Broker continuity (G4). RabbitMQ 3.10 can confirm a publish whose copy in a bound stream it
 * never writes: across a node stop (`rabbitmqctl stop_app` / `start_app`), a producer with
 * confirms had every message in its classic queue while the stream bound beside it lacked a few
 * hundred contiguous ones, with no gap in the stream's offsets. Nothing in a journal shows such a
 * hole, so Tidemark watches for the event that causes it, a restart of the broker, and marks the
 * queues whose history may have one (IncompleteMark in the manifest) instead of presenting them
 * as complete.
 *
 * The detector is a sentinel per vhost: a transient (non-durable) classic queue. RabbitMQ empties
 * its table of transient queues when the node boots, so a missing sentinel means the broker
 * restarted (or someone deleted it) after it was declared. The rules that make this sound:
 * - the sentinel is checked after a round's fence is confirmed: if it is there, the broker did not
 *   restart between its declaration and the fence, so no restart hole lies before the cut;
 * - a missing sentinel marks every queue of its vhost in that round's checkpoint, and every later
 *   checkpoint of a queue keeps the queue's marks (the hole stays in its history);
 * - the sentinel is declared again only once a checkpoint carrying those marks has committed. A
 *   restart between the check and the new declaration leaves its hole after the marked cut, in
 *   queues that are marked already; a restart after the new declaration is seen by the next check;
 * - a vhost gets its sentinel before its first journal, so a journal never predates its sentinel.
 *
 * What it does not see: in a cluster, the sentinel lives on one node; the stop of another node
 * that holds stream members is not detected (docs/OPERATIONS.md).
 */
import type { ChannelModel } from 'amqplib';
import { errorMessage } from '../core/index.js';
import { ContinuityCheckError } from './errors.js';
import type { IncompleteQueue } from '../gen/tidemark/v1/admin.js';
import type { CheckpointManifest } from '../gen/tidemark/v1/store.js';

/** What a round needs to know about the broker's continuity. */
export interface BrokerContinuity {
  /**
   * The vhosts among `vhosts` whose sentinel is missing: the broker restarted since it was
   * declared, and their journals may lack messages the broker confirmed. Rejects when the broker
   * cannot be asked (the round then aborts: an unknown answer must not pass for "no restart").
   */
  restarted(vhosts: string[]): Promise<string[]>;
  /** Declares the sentinel of `vhost` (again). */
  arm(vhost: string): Promise<void>;
}

/** The sentinel's name in each vhost: Tidemark's own object, never protected. */
export function sentinelName(namespace: string): string {
  return `${namespace}.sentinel`;
}

/** The reason recorded in a mark when a vhost's sentinel was found missing. */
export function restartReason(vhost: string): string {
  return (
    `the broker restarted (vhost ${JSON.stringify(vhost)} lost Tidemark's transient sentinel queue): RabbitMQ can confirm ` +
    'publishes around a node stop without writing their copy to the journal, so messages published around the restart may be missing'
  );
}

/** The AMQP implementation: one short-lived channel per check, on the coordinator's connections. */
export class AmqpBrokerContinuity implements BrokerContinuity {
  constructor(
    private readonly namespace: string,
    private readonly connect: (vhost: string) => Promise<ChannelModel>,
  ) {}

  async restarted(vhosts: string[]): Promise<string[]> {
    const missing = await Promise.all(vhosts.map(async (vhost) => ((await this.present(vhost)) ? undefined : vhost)));
    return missing.filter((v): v is string => v !== undefined);
  }

  async arm(vhost: string): Promise<void> {
    const connection = await this.connect(vhost);
    const channel = await connection.createChannel();
    try {
      await channel.assertQueue(sentinelName(this.namespace), { durable: false, autoDelete: false, exclusive: false });
    } finally {
      await channel.close().catch(() => {});
    }
  }

  private async present(vhost: string): Promise<boolean> {
    const connection = await this.connect(vhost);
    const channel = await connection.createChannel();
    // A passive declare of a missing queue closes the channel with 404; that is the answer.
    channel.on('error', () => {});
    try {
      await channel.checkQueue(sentinelName(this.namespace));
      await channel.close().catch(() => {});
      return true;
    } catch (err) {
      if (/\b404\b|NOT_FOUND/.test(errorMessage(err))) return false;
      throw new ContinuityCheckError(vhost, `could not check whether the broker restarted (vhost ${vhost}): ${errorMessage(err)}`, { cause: err });
    }
  }
}

/** The queues a checkpoint marks as possibly incomplete, each with its newest mark. */
export function incompleteQueues(manifest: CheckpointManifest): IncompleteQueue[] {
  return manifest.queues
    .filter((q) => q.incomplete.length > 0)
    .map((q) => {
      const newest = q.incomplete.reduce((a, b) => (b.detectedAtMs > a.detectedAtMs ? b : a));
      return {
        vhost: q.definition!.vhost,
        queue: q.definition!.name,
        sinceEpoch: newest.epoch,
        detectedAtMs: newest.detectedAtMs,
        reason: newest.reason,
        marks: q.incomplete.length,
      };
    });
}
