/**
 * A discrete-event scheduler with virtual time. Every action of the simulated world (a message
 * arriving, a timer firing, a Redis or store call completing) is a task at a virtual instant; one
 * step runs the earliest task. Ties run in the order they were scheduled, so a seed fixes the order
 * of everything. No real clock or timer is involved: a schedule of minutes runs in microseconds.
 *
 * A node can be paused (a GC pause, a stalled process): its tasks that come due meanwhile run when
 * the pause ends, in their original order. That is how a leader outlives its lease without knowing.
 */
export interface Task {
  at: number;
  seq: number;
  /** The node whose process runs this task; pausing the node defers it. */
  owner: string;
  label: string;
  run: () => void;
  /** A cancelled task (a deadline that did not matter) is dropped without being a step. */
  cancelled: boolean;
}

export class Scheduler {
  now = 0;
  steps = 0;
  private seq = 0;
  private readonly heap: Task[] = [];
  private readonly pausedUntil = new Map<string, number>();
  /** The last lines of the trace, for a failure report. */
  private readonly tail: string[] = [];
  private tailAt = 0;
  /** Every line, when a caller wants to compare whole traces. */
  readonly full: string[] | undefined;
  /** FNV-1a over every trace line: two runs with the same hash ran the same schedule. */
  hash = 0x811c9dc5;

  constructor(
    private readonly tailSize: number,
    keepFullTrace: boolean,
  ) {
    this.full = keepFullTrace ? [] : undefined;
  }

  /** Runs `run` `delay` virtual ms from now on behalf of `owner`; the task can be cancelled. */
  at(delay: number, owner: string, label: string, run: () => void): Task {
    const task: Task = { at: this.now + Math.max(0, delay), seq: this.seq++, owner, label, run, cancelled: false };
    this.push(task);
    return task;
  }

  pause(owner: string, until: number): void {
    this.pausedUntil.set(owner, Math.max(until, this.pausedUntil.get(owner) ?? 0));
  }

  isPaused(owner: string): boolean {
    return (this.pausedUntil.get(owner) ?? 0) > this.now;
  }

  get pending(): number {
    return this.heap.length;
  }

  /** Runs the next task; false when nothing is left or the next task is past `until`. */
  step(until: number): boolean {
    for (;;) {
      const task = this.heap[0];
      if (!task || task.at > until) return false;
      this.pop();
      if (task.cancelled) continue;
      this.now = task.at;
      const paused = this.pausedUntil.get(task.owner);
      if (paused !== undefined && paused > task.at) {
        // Deferred, not dropped: the paused process does this when it wakes up.
        task.at = paused;
        task.seq = this.seq++;
        this.push(task);
        continue;
      }
      this.steps += 1;
      this.log(task.label);
      task.run();
      return true;
    }
  }

  /** Adds a line to the trace (tasks log their label; the world logs what they decided). */
  log(line: string): void {
    const text = `${this.now} ${line}`;
    if (this.tail.length < this.tailSize) this.tail.push(text);
    else this.tail[this.tailAt] = text;
    this.tailAt = (this.tailAt + 1) % this.tailSize;
    this.full?.push(text);
    let h = this.hash;
    for (let i = 0; i < text.length; i += 1) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
    this.hash = Math.imul(h ^ 10, 0x01000193) >>> 0;
  }

  lastLines(): string[] {
    if (this.tail.length < this.tailSize) return [...this.tail];
    return [...this.tail.slice(this.tailAt), ...this.tail.slice(0, this.tailAt)];
  }

  private push(task: Task): void {
    const heap = this.heap;
    heap.push(task);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i], heap[parent])) break;
      [heap[i], heap[parent]] = [heap[parent], heap[i]];
      i = parent;
    }
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop()!;
    if (heap.length === 0) return;
    heap[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let min = i;
      if (l < heap.length && before(heap[l], heap[min])) min = l;
      if (r < heap.length && before(heap[r], heap[min])) min = r;
      if (min === i) return;
      [heap[i], heap[min]] = [heap[min], heap[i]];
      i = min;
    }
  }
}

function before(a: Task, b: Task): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
