/**
 * The simulated RabbitMQ, as capture and the round see it (what queue-capture.ts reads and what
 * round-runner.ts publishes): one journal stream per protected queue, with offsets from 0, data
 * records appended by producers, and fence records appended by the leader's fence publish.
 *
 * A fence publish goes to a fanout exchange bound to every journal of the vhost, so it is appended
 * to all of them in one step: the broker's routing of one message is the model's unit of
 * atomicity (the assumption docs/PROTOCOL.md "Why one fence gives one cut" states).
 * Journals are never truncated or lost here: retention and replaced journals are out of scope.
 */
export type JournalEntry =
  | { offset: number; kind: 'data'; id: number }
  | { offset: number; kind: 'fence'; epoch: number; roundId: string };

export interface SimQueue {
  vhost: string;
  name: string;
  journal: string;
  /** The worker that captures it: assignment is fixed for a whole schedule. */
  owner: string;
}

export class Broker {
  readonly journals = new Map<string, JournalEntry[]>();
  private nextId = 1;

  constructor(readonly queues: SimQueue[]) {
    for (const q of queues) this.journals.set(q.name, []);
  }

  /** A producer's message, confirmed once it is in the queue's journal. */
  publish(queue: string): number {
    const journal = this.journals.get(queue)!;
    const id = this.nextId++;
    journal.push({ offset: journal.length, kind: 'data', id });
    return id;
  }

  /** The fence of a round, appended to every journal of `vhost` at once. */
  publishFence(vhost: string, epoch: number, roundId: string): void {
    for (const q of this.queues) {
      if (q.vhost !== vhost) continue;
      const journal = this.journals.get(q.name)!;
      journal.push({ offset: journal.length, kind: 'fence', epoch, roundId });
    }
  }

  /** The offset of a round's fence in a journal, if it was published there. */
  fenceOffset(queue: string, epoch: number, roundId: string): number | undefined {
    const journal = this.journals.get(queue)!;
    for (const e of journal) if (e.kind === 'fence' && e.epoch === epoch && e.roundId === roundId) return e.offset;
    return undefined;
  }
}
