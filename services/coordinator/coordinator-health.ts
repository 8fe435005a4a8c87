/**
 * The coordinator's health (docs/API.md#health): SERVING once it has started, as leader or
 * standby, while Redis, the broker and the store answer. The leader name is SERVING only on the
 * leader, for routing that must reach it.
 */
import type { Config, Logger } from '../core/index.js';
import { ServiceHealth } from '../core/health/index.js';
import { brokerCheck } from '../core/amqp/index.js';
import { redisCheck } from '../core/redis/index.js';
import { storeCheck } from '../core/store/index.js';
import { CoordinatorServiceService } from '../gen/tidemark/v1/admin.js';
import type { Coordinator } from './coordinator.js';

/** The admin API's full service name, as health and reflection name it. */
export const COORDINATOR_SERVICE = CoordinatorServiceService.status.path.split('/')[1];

/** SERVING only on the leader (and only while it is ready). */
export const LEADER_HEALTH = `${COORDINATOR_SERVICE}/leader`;

export interface CoordinatorHealth {
  health: ServiceHealth;
  /** Stops probing and closes the broker check's connection. */
  close(): Promise<void>;
}

export function coordinatorHealth(coordinator: Coordinator, config: Config, log: Logger): CoordinatorHealth {
  const { redis, store } = coordinator.restoreParts;
  const broker = brokerCheck(config.amqpUrl, `tidemark coordinator ${config.id} health`, log);
  const health = new ServiceHealth({
    service: COORDINATOR_SERVICE,
    checks: [redisCheck(redis), broker, storeCheck(store)],
    conditional: { [LEADER_HEALTH]: () => coordinator.isLeader },
    log,
  });
  return {
    health,
    async close() {
      health.stop();
      await broker.close();
    },
  };
}
