/**
 * What a restore task runs with: shared by the runner (restore-runner.ts) and the checks it makes
 * (restore-resume.ts, restore-verify.ts), kept apart so they do not import each other in a circle.
 */
import type { RestoreProgress, RestoreTask } from '../gen/tidemark/v1/worker.js';
import type { Logger } from '../core/index.js';
import type { ObjectStore } from '../core/store/index.js';

export interface RestoreRunOptions {
  task: RestoreTask;
  store: ObjectStore;
  /** Broker used when the task names none. */
  defaultAmqpUrl: string;
  workerId: string;
  confirmWindow: number;
  log: Logger;
  emit: (progress: RestoreProgress) => void;
  signal: AbortSignal;
  /** Queues restored at the same time by this worker. @default 4 */
  concurrency?: number;
  /** Where each queue's confirmed prefix is recorded for resume; none: progress is not kept. */
  progress?: RestoreProgressSink;
}

/** The durable side of a restore's progress (RestoreStateStore, bound to one restore). */
export interface RestoreProgressSink {
  markStarted(queueKey: string): Promise<void>;
  advance(queueKey: string, confirmed: number, offset: number): Promise<void>;
}
