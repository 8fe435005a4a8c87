/**
 * Injects one fault into a running chaos cluster, holds it, and heals it. Knows how to break each
 * part (see faults.ts); knows nothing about rounds or histories.
 */
import amqp from 'amqplib';
import type { TestCluster } from '../helpers/cluster.js';
import { amqpUrlForVhost } from '../../services/core/amqp/vhost-url.js';
import type { FaultKind } from './faults.js';
import { restartRabbitMQ, type RedisServer, type S3Server } from './own-services.js';
import type { FaultProxy } from './proxy.js';

export interface FaultTargets {
  cluster: TestCluster;
  redis: RedisServer;
  s3: S3Server;
  /** The proxy between the coordinators and `linkedWorker`. */
  link: FaultProxy;
  linkedWorker: string;
  workers: string[];
  amqpUrl: string;
  managementUrl: string;
  /** The run's own vhosts (a broker restart waits for other vhosts' connections to go). */
  ownVhosts: string[];
  /** Names of the run's own connections to other vhosts (its processes' broker health checks). */
  ownConnectionNames: string[];
  /** The vhost of the protected queues, and their journals (victims of journal-delete). */
  vhost: string;
  journals: string[];
  log: (line: string) => void;
  /** The name of the leading coordinator, right now. */
  leader: () => Promise<string>;
  /** Picks the victim among several. */
  random: () => number;
}

export interface InjectedFault {
  /** What was hit. */
  target: string;
  /** When the fault was healed (the process started again, the server answered, the link healed). */
  healedAtMs: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function injectFault(kind: FaultKind, holdMs: number, t: FaultTargets): Promise<InjectedFault> {
  let target: string;
  let heal: () => Promise<void>;
  switch (kind) {
    case 'worker-kill': {
      const name = t.workers[Math.floor(t.random() * t.workers.length)];
      target = name;
      await t.cluster.kill(name);
      heal = async () => t.cluster.restart(name);
      break;
    }
    case 'leader-kill': {
      const name = await t.leader();
      target = name;
      await t.cluster.kill(name);
      heal = async () => t.cluster.restart(name);
      break;
    }
    case 'link-reset':
    case 'link-blackhole':
      target = `coordinators <-> ${t.linkedWorker}`;
      t.link.cut(kind === 'link-reset' ? { mode: 'reset', live: 'destroy' } : { mode: 'blackhole', live: 'freeze' });
      heal = async () => t.link.heal();
      break;
    case 's3-restart':
      target = 's3rver';
      await t.s3.kill();
      heal = () => t.s3.launch();
      break;
    case 'redis-restart':
      target = 'redis-server';
      await t.redis.kill();
      heal = () => t.redis.launch();
      break;
    case 'journal-delete': {
      const journal = t.journals[Math.floor(t.random() * t.journals.length)];
      target = journal;
      const connection = await amqp.connect(amqpUrlForVhost(t.amqpUrl, t.vhost));
      try {
        await (await connection.createChannel()).deleteQueue(journal);
      } finally {
        await connection.close().catch(() => {});
      }
      // Tidemark heals it itself (the next discovery pass declares the journal again).
      heal = async () => {};
      break;
    }
    case 'rabbitmq-restart':
      target = 'rabbitmq';
      // stop_app, the hold, start_app and the wait for AMQP and management all happen here.
      await restartRabbitMQ(t.amqpUrl, t.managementUrl, { downMs: holdMs, ownVhosts: t.ownVhosts, ownConnectionNames: t.ownConnectionNames, log: t.log });
      return { target, healedAtMs: Date.now() };
  }
  await sleep(holdMs);
  await heal();
  return { target, healedAtMs: Date.now() };
}
