/**
 * The worker's health (docs/API.md#health): SERVING once it has started while Redis, the broker
 * and the store answer.
 */
import type { Config, Logger } from '../core/index.js';
import { ServiceHealth } from '../core/health/index.js';
import { brokerCheck } from '../core/amqp/index.js';
import { redisCheck } from '../core/redis/index.js';
import { storeCheck } from '../core/store/index.js';
import { WorkerServiceService } from '../gen/tidemark/v1/worker.js';
import type { Worker } from './worker.js';

/** The worker API's full service name, as health names it. */
export const WORKER_SERVICE = WorkerServiceService.prepare.path.split('/')[1];

export interface WorkerHealth {
  health: ServiceHealth;
  /** Stops probing and closes the broker check's connection. */
  close(): Promise<void>;
}

export function workerHealth(worker: Worker, config: Config, log: Logger): WorkerHealth {
  const broker = brokerCheck(config.amqpUrl, `tidemark worker ${config.id} health`, log);
  const health = new ServiceHealth({ service: WORKER_SERVICE, checks: [redisCheck(worker.dependencies.redis), broker, storeCheck(worker.dependencies.store)], log });
  return {
    health,
    async close() {
      health.stop();
      await broker.close();
    },
  };
}
