/** The worker service: start one with startWorker(config). */
import { hostname } from 'node:os';
import { type Config, configureFailpoints, type Logger, startServer, stopServer, throwIfStopping } from '../core/index.js';
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

/**
 * Starts a worker. When `signal` aborts while it starts (SIGTERM during startup), the startup
 * gives up whatever it is waiting for, closes what it opened, and rejects with a StoppingError.
 */
export async function startWorker(config: Config, log: Logger, signal?: AbortSignal): Promise<RunningWorker> {
  configureFailpoints(config.failpoints);
  const worker = await Worker.create({ config, log }, signal);
  let server: Awaited<ReturnType<typeof startServer>>['server'];
  let port: number;
  try {
    throwIfStopping(signal);
    ({ server, port } = await startServer([[WorkerServiceService, workerHandlers(worker)]], config.listen ?? '127.0.0.1:0'));
  } catch (err) {
    await worker.stop().catch(() => {});
    throw err;
  }
  // Only now is the port known, so only now can the worker tell the leader where it is.
  const address = config.advertise ?? advertiseAddress(config.listen ?? '127.0.0.1:0', port);
  try {
    await worker.start(address, signal);
  } catch (err) {
    server.forceShutdown();
    await worker.stop().catch(() => {});
    throw err;
  }
  return {
    worker,
    address,
    async stop() {
      // Restores and prepares in flight end first, so their calls do not take the server's grace period.
      worker.interrupt();
      await stopServer(server, 2_000);
      await worker.stop();
    },
  };
}

function advertiseAddress(listen: string, port: number): string {
  const host = listen.slice(0, listen.lastIndexOf(':'));
  const reachable = host === '0.0.0.0' || host === '::' || host === '[::]' ? hostname() : host;
  return `${reachable}:${port}`;
}
