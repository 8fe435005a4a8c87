/** The worker service: start one with startWorker(config). */
import { hostname } from 'node:os';
import type { Config } from '../core/config.js';
import type { Logger } from '../core/log.js';
import { startServer, stopServer } from '../core/grpc.js';
import { WorkerServiceService } from '../gen/tidemark/v1/worker.js';
import { Worker } from './worker.js';
import { workerHandlers } from './worker-service.js';

export { Worker } from './worker.js';

export interface RunningWorker {
  worker: Worker;
  /** host:port the leader reaches this worker at. */
  address: string;
  stop(): Promise<void>;
}

export async function startWorker(config: Config, log: Logger): Promise<RunningWorker> {
  const listen = config.listen ?? '127.0.0.1:0';
  let worker: Worker | undefined;
  const { server, port } = await startServer(
    [[WorkerServiceService, lazyHandlers(() => worker!)]],
    listen,
  );
  const address = config.advertise ?? advertiseAddress(listen, port);
  try {
    worker = await Worker.create({ config, log, address });
    await worker.start();
  } catch (err) {
    server.forceShutdown();
    throw err;
  }
  return {
    worker,
    address,
    async stop() {
      await stopServer(server, 2_000);
      await worker!.stop();
    },
  };
}

/** Handlers are bound before the worker exists so the port is known when it registers. */
function lazyHandlers(get: () => Worker) {
  return new Proxy({} as ReturnType<typeof workerHandlers>, {
    get: (_target, method: string) => (...args: unknown[]) => {
      const handlers = workerHandlers(get()) as unknown as Record<string, (...a: unknown[]) => unknown>;
      return handlers[method](...args);
    },
  });
}

function advertiseAddress(listen: string, port: number): string {
  const host = listen.slice(0, listen.lastIndexOf(':'));
  const reachable = host === '0.0.0.0' || host === '::' || host === '[::]' ? hostname() : host;
  return `${reachable}:${port}`;
}
