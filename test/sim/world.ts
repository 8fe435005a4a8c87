/**
 * Everything one simulated schedule shares: the scheduler and random source, the links, the
 * external systems (broker, Redis, store) and the processes. Processes reach each other only
 * through `net`; the checker sees every change that matters to an invariant.
 */
import type { QueueDefinition } from '../../services/gen/tidemark/v1/store.js';
import type { Broker, SimQueue } from './broker.js';
import type { Checker } from './invariants.js';
import type { Network, Process } from './network.js';
import type { SimOptions } from './options.js';
import type { Random } from './random.js';
import type { RedisModel } from './redis.js';
import type { Scheduler } from './scheduler.js';
import type { ObjectStoreModel } from './store.js';
import type { WorkerNode } from './worker-node.js';

export interface World {
  options: SimOptions;
  scheduler: Scheduler;
  random: Random;
  net: Network;
  broker: Broker;
  redis: RedisModel;
  store: ObjectStoreModel;
  checker: Checker;
  queues: SimQueue[];
  definitions: Map<string, QueueDefinition>;
  workers: Map<string, WorkerNode>;
  /** True once faults have stopped: no new rounds, no producers, the world should settle. */
  calm: boolean;
  /** Queues whose segment writes fail until the time given (FaultRates.queueOutage), by name. */
  outages: Map<string, number>;
  /** Crashes a process now; it restarts a little later. */
  crash: (node: Node) => void;
  stats: SimStats;
}

/** Counts that show a schedule exercised the protocol (not asserted per schedule). */
export interface SimStats {
  rounds: number;
  committed: number;
  aborted: number;
  inDoubt: number;
  recoveries: number;
  presumedAborted: number;
  finished: number;
  unfinishable: number;
  askedDecisions: number;
  /** DECIDEs re-sent from a leader's queue (recovery's recent decisions, or undelivered ones). */
  resentDecisions: number;
  /** Manifests that landed while their writer did not hold the lease in Redis (deposed, paused, Redis lost). */
  staleManifests: number;
  /** Schedules that ended with the lease holder's token below one a worker had seen (options.ts leaderMustOutrankWorkers). */
  leaderOutranked: number;
  crashes: number;
  pauses: number;
  /** Queue outages begun (FaultRates.queueOutage). */
  queueOutages: number;
  /** Committed checkpoints with some queue outside the cut (G8). */
  partial: number;
  /** Of the rounds recovery finished, those that carried queues from their parent checkpoint. */
  finishedCarrying: number;
  redisLosses: number;
  /** Retention and GC (gc-runner.ts): checkpoints, segments and staged partitions deleted. */
  prunedCheckpoints: number;
  sweptSegments: number;
  sweptStaged: number;
}

export function emptyStats(): SimStats {
  return {
    rounds: 0,
    committed: 0,
    aborted: 0,
    inDoubt: 0,
    recoveries: 0,
    presumedAborted: 0,
    finished: 0,
    unfinishable: 0,
    askedDecisions: 0,
    resentDecisions: 0,
    staleManifests: 0,
    leaderOutranked: 0,
    crashes: 0,
    pauses: 0,
    queueOutages: 0,
    partial: 0,
    finishedCarrying: 0,
    redisLosses: 0,
    prunedCheckpoints: 0,
    sweptSegments: 0,
    sweptStaged: 0,
  };
}

/** A process that can crash (volatile state lost) and restart. */
export interface Node extends Process {
  crash(): void;
  restart(): void;
}
