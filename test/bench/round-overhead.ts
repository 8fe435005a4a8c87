/**
 * Round overhead: the worker's capture rate with a checkpoint round scheduled every second ÷ with
 * scheduled rounds off, through the real cluster (coordinator and worker processes).
 *
 * One measurement: SIGKILL the worker and the coordinator; fill the protected queue (and so its
 * journal) with N messages; start the worker again, and the coordinator with TIDEMARK_INTERVAL=1s
 * or 0; the worker resumes the journal from the last checkpoint's cut and catches up. The
 * worker's own status (polled every 15 ms over gRPC) gives the rate: from the first poll that
 * shows the queue attached (the messages it had already counted are subtracted) to the first
 * poll that shows all N read. Reading cannot run ahead of the store by more than a few segments
 * (queue-capture.ts withholds acks while segment writes lag), so this is the rate records become
 * durable, minus the last partial segment; the time until that one is durable too is reported
 * apart (it waits for the flush tick, or for a round's prepare, which would favour rounds).
 * A committed round after each measurement makes the next one resume from the end.
 *
 * Both modes restart both processes the same way and alternate across repetitions, after one
 * warm-up run with rounds off.
 */
import { WorkerClient } from '../../services/core/grpc/worker-client.js';
import type { QueueCaptureStatus } from '../../services/gen/tidemark/v1/worker.js';
import { bodyMaker, checkJournalBudget, connectAmqp, log, messageOptions, now, pairOrder, publishWindowed, rateText, sleep, spread, TARGETS, type BenchContext, type MessageSize, type Ratio } from './bench-kit.js';
import { commitRound, EXCHANGE, overheadQueue, purge, type ProtectedCluster } from './protected-cluster.js';

type Mode = 'rounds off' | 'rounds every 1s';
const POLL_MS = 15;

/** Messages the last committed checkpoint holds of `queue`. */
async function checkpointedMessages(pc: ProtectedCluster, epoch: number, queue: string): Promise<number> {
  const manifest = await pc.cluster.client.getCheckpoint(String(epoch));
  const entry = manifest.queues.find((q) => q.definition?.vhost === pc.vhost && q.definition?.name === queue);
  if (!entry) throw new Error(`checkpoint ${epoch} holds no entry for ${pc.vhost}/${queue}`);
  return entry.messages;
}

async function fill(pc: ProtectedCluster, size: MessageSize, count: number): Promise<void> {
  const body = bodyMaker(size.bytes);
  const connection = await connectAmqp(pc.url);
  try {
    const channel = await connection.createConfirmChannel();
    await publishWindowed(channel, count, 2_000, (i) => ({ exchange: EXCHANGE, routingKey: overheadQueue(size), body: body(i), options: messageOptions(i) }));
  } finally {
    await connection.close().catch(() => {});
  }
}

/** Polls the (restarted) worker until it reports the queue; the client, and the first status of the queue. */
async function attachedWorker(pc: ProtectedCluster, queue: string): Promise<{ worker: WorkerClient; first: QueueCaptureStatus; at: number }> {
  const deadline = Date.now() + 60_000;
  let address = '';
  let worker: WorkerClient | undefined;
  while (Date.now() < deadline) {
    const status = await pc.cluster.client.status().catch(() => undefined);
    const reported = status?.workers[0]?.address ?? '';
    if (reported && reported !== address) {
      worker?.close();
      address = reported;
      worker = new WorkerClient(address, { workerId: status!.workers[0].workerId, tls: pc.cluster.workerTls });
    }
    // Only a live worker answers: the killed one's address may still be listed for a lease time.
    const own = await worker?.status(1_000).catch(() => undefined);
    const first = own?.queues.find((q) => q.vhost === pc.vhost && q.queue === queue);
    if (worker && first) return { worker, first, at: now() };
    await sleep(POLL_MS);
  }
  worker?.close();
  throw new Error(`the restarted worker did not report ${pc.vhost}/${queue} within 60 s; logs in ${pc.cluster.logFile}`);
}

interface CatchUp {
  /** Messages per second read into the capture, up to all N. */
  rate: number;
  /** From all N read to all N durable. */
  durableLagMs: number;
  /** Messages of the queue in the checkpoint committed afterwards. */
  checkpointed: number;
}

async function catchUp(pc: ProtectedCluster, size: MessageSize, mode: Mode, count: number, base: number): Promise<CatchUp> {
  const { cluster } = pc;
  const queue = overheadQueue(size);
  await cluster.kill('worker-1');
  await cluster.kill('coordinator');
  await fill(pc, size, count);
  await purge(pc.url, [queue]);
  // The worker first: registered by the time the new coordinator leads, it gets its assignment
  // from the leader's first discovery pass instead of waiting a discovery interval for the next.
  cluster.restart('worker-1');
  cluster.restart('coordinator', { TIDEMARK_INTERVAL: mode === 'rounds off' ? '0' : '1s' });
  const target = base + count;
  const { worker, first, at } = await attachedWorker(pc, queue);
  try {
    if (first.messages >= target) throw new Error(`the worker had read all ${count} messages by its first status: raise the count`);
    let readAt = 0;
    let readUpTo = 0;
    const deadline = Date.now() + 300_000;
    for (;;) {
      if (Date.now() > deadline) throw new Error(`capture of ${queue} did not catch up within 300 s; logs in ${cluster.logFile}`);
      const status = (await worker.status(5_000)).queues.find((q) => q.vhost === pc.vhost && q.queue === queue);
      if (status?.error) throw new Error(`capture of ${queue} failed: ${status.error}`);
      if (status && !readAt && status.messages >= target) {
        readAt = now();
        readUpTo = status.nextOffset;
      }
      if (status && readAt && status.durableOffset >= readUpTo) {
        const rate = ((target - first.messages) * 1000) / (readAt - at);
        const durableLagMs = now() - readAt;
        const epoch = await commitRound(cluster);
        return { rate, durableLagMs, checkpointed: await checkpointedMessages(pc, epoch, queue) };
      }
      await sleep(POLL_MS);
    }
  } finally {
    worker.close();
  }
}

/** Leaves the cluster as its last measurement left it (possibly with rounds scheduled): run it after the other steps on the cluster. */
export async function measureRoundOverhead(ctx: BenchContext, pc: ProtectedCluster, size: MessageSize, reps: number): Promise<Ratio> {
  const count = ctx.counts.overhead[size.label];
  const queue = overheadQueue(size);
  checkJournalBudget(`round overhead: ${1 + 2 * reps} runs`, size, (1 + 2 * reps) * count);
  // The resume point: what the newest checkpoint holds of the queue.
  let base = await checkpointedMessages(pc, await commitRound(pc.cluster), queue);
  const rates: Record<Mode, number[]> = { 'rounds off': [], 'rounds every 1s': [] };
  const lags: number[] = [];
  const paired: number[] = [];
  for (let rep = 0; rep <= reps; rep += 1) {
    const result: Partial<Record<Mode, number>> = {};
    // The warm-up is one run: every run restarts both processes anyway.
    const modes: Mode[] = rep === 0 ? ['rounds off'] : pairOrder<Mode>(rep, 'rounds off', 'rounds every 1s');
    for (const mode of modes) {
      const run = await catchUp(pc, size, mode, count, base);
      if (run.checkpointed !== base + count) throw new Error(`the checkpoint after catching up holds ${run.checkpointed} messages of ${queue}, expected ${base + count}`);
      base = run.checkpointed;
      result[mode] = run.rate;
      if (rep > 0) lags.push(run.durableLagMs);
    }
    if (rep === 0) {
      log(`round overhead ${size.label} warm-up: rounds off ${Math.round(result['rounds off']!)}/s`);
      continue;
    }
    log(`round overhead ${size.label} rep ${rep}/${reps}: rounds every 1s ${Math.round(result['rounds every 1s']!)}/s, rounds off ${Math.round(result['rounds off']!)}/s`);
    rates['rounds off'].push(result['rounds off']!);
    rates['rounds every 1s'].push(result['rounds every 1s']!);
    paired.push(result['rounds every 1s']! / result['rounds off']!);
  }
  const on = spread(rates['rounds every 1s']);
  const off = spread(rates['rounds off']);
  const lag = spread(lags);
  return {
    name: 'round_overhead',
    label: size.label,
    value: on.median / off.median,
    target: TARGETS.round_overhead,
    detail: `rounds every 1s ${rateText(on)}, rounds off ${rateText(off)}; ${count} messages of backlog per run, last segment durable ${Math.round(lag.median)} ms later (median), ${reps} reps`,
    paired: spread(paired),
  };
}
