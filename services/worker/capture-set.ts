/**
 * The queues a worker captures: applies assignments from the leader, keeps one channel per
 * queue on the vhost's connection, and re-attaches every capture after a reconnect.
 */
import type { ChannelModel } from 'amqplib';
import type { QueueAssignment } from '../gen/tidemark/v1/worker.js';
import type { Logger } from '../core/log.js';
import type { ObjectStore } from '../core/store/object-store.js';
import { VhostConnections } from '../core/amqp/vhost-connections.js';
import { errorMessage } from '../core/errors.js';
import { QueueCapture } from './queue-capture.js';

export interface CaptureSetOptions {
  namespace: string;
  amqpUrl: string;
  store: ObjectStore;
  log: Logger;
  segmentBytes: number;
  prefetch: number;
  clientName: string;
}

export function queueId(vhost: string, queue: string): string {
  return `${vhost}\u0000${queue}`;
}

export class CaptureSet {
  private readonly captures = new Map<string, QueueCapture>();
  private readonly connections: VhostConnections;
  private readonly watched = new Set<string>();

  constructor(private readonly options: CaptureSetOptions) {
    this.connections = new VhostConnections(options.amqpUrl, options.log, options.clientName);
  }

  get(vhost: string, queue: string): QueueCapture | undefined {
    return this.captures.get(queueId(vhost, queue));
  }

  all(): QueueCapture[] {
    return [...this.captures.values()];
  }

  /**
   * Makes the captured set equal to `assignments`. Queues already captured keep their state
   * (their resume offsets are only used for queues new to this worker).
   */
  async apply(assignments: QueueAssignment[]): Promise<void> {
    const wanted = new Map(assignments.map((a) => [queueId(a.definition!.vhost, a.definition!.name), a]));
    for (const [id, capture] of this.captures) {
      if (!wanted.has(id)) {
        this.captures.delete(id);
        await capture.detach();
        this.options.log.info(`released ${capture.vhost}/${capture.queue}`);
      }
    }
    // A failed capture is retried with a fresh one, but it stays in the set (and its error in
    // status) until the replacement is attached: an operator never sees a failing queue as healthy.
    const started: QueueCapture[] = [];
    for (const [id, assignment] of wanted) {
      const existing = this.captures.get(id);
      if (existing && !existing.error) {
        existing.definition = assignment.definition!;
        continue;
      }
      if (existing) await existing.detach();
      const capture = new QueueCapture({
        namespace: this.options.namespace,
        assignment,
        store: this.options.store,
        log: this.options.log,
        segmentBytes: this.options.segmentBytes,
        prefetch: this.options.prefetch,
      });
      if (!existing) this.captures.set(id, capture);
      started.push(capture);
    }
    const byVhost = new Map<string, QueueCapture[]>();
    for (const capture of started) {
      byVhost.set(capture.vhost, [...(byVhost.get(capture.vhost) ?? []), capture]);
    }
    for (const [vhost, captures] of byVhost) {
      await this.ensureWatched(vhost);
      const connection = await this.connections.connect(vhost);
      await Promise.all(captures.map((capture) => this.attach(connection, capture)));
      for (const capture of captures) this.captures.set(queueId(capture.vhost, capture.queue), capture);
      this.options.log.info(`capturing ${captures.length} new queue(s) in vhost ${vhost}`);
    }
  }

  private async ensureWatched(vhost: string): Promise<void> {
    if (this.watched.has(vhost)) return;
    this.watched.add(vhost);
    let first = true;
    await this.connections.watch(vhost, async (connection) => {
      if (first) {
        first = false;
        return; // apply() attaches the first time
      }
      const captures = this.all().filter((c) => c.vhost === vhost && !c.error);
      await Promise.all(captures.map((capture) => this.attach(connection, capture)));
      this.options.log.info(`re-attached ${captures.length} capture(s) in vhost ${vhost}`);
    });
  }

  private async attach(connection: ChannelModel, capture: QueueCapture): Promise<void> {
    try {
      const channel = await connection.createChannel();
      channel.on('error', (err) => this.options.log.warn(`channel of ${capture.vhost}/${capture.queue}: ${errorMessage(err)}`));
      await capture.attach(channel);
    } catch (err) {
      capture.fail(new Error(`cannot read journal ${capture.journal} of ${capture.vhost}/${capture.queue}: ${errorMessage(err)}`, { cause: err }));
    }
  }

  /** Flushes every capture's buffer; failures are retried on the next tick. */
  tick(): void {
    for (const capture of this.captures.values()) capture.tick();
  }

  async close(): Promise<void> {
    for (const capture of this.captures.values()) await capture.detach();
    this.captures.clear();
    await this.connections.close();
  }
}
