/**
 * Restore efficiency: messages per second restored ÷ what a bare amqplib confirmed publisher with
 * the same confirm window publishes of the same messages into a fresh queue of the same type.
 *
 * "The same messages" are the ones a restore puts into the target: the captured body and
 * properties plus Tidemark's origin headers (on by default) and `mandatory`. The broker accepts
 * far fewer of those per second than of the bare messages at 128 B, so the ratio is taken
 * against a publisher of identical messages, and the header-less publisher's rate is printed
 * beside it. The warm-up checks that the two targets' first messages are the same.
 *
 * Tidemark's side is the worker's real restore path, runRestoreTask (restore-runner.ts), on the
 * segments and QueueCheckpoint the capture step wrote (each decompressed by the codec its ref
 * names, gzip or identity as the capture's adaptive codec picked): it verifies every segment of the prefix,
 * declares the target, then reads the segments again and publishes with the worker's confirm
 * window, origin headers on, recording its confirmed prefix in Redis as a worker does. Timed from
 * the call to its return. The bare publisher connects, declares a classic queue and publishes the
 * same bodies and properties to it through the default exchange with the same window, timed from
 * connect to the last confirm. The targets are deleted after each repetition, outside the timing.
 */
import type { Redis } from 'ioredis';
import { createLogger } from '../../services/core/infrastructure/log.js';
import type { Options } from 'amqplib';
import { ORIGIN_CHECKPOINT_HEADER, ORIGIN_OFFSET_HEADER, ORIGIN_QUEUE_HEADER, ORIGIN_RESTORE_HEADER, ORIGIN_VHOST_HEADER } from '../../services/core/format/names.js';
import { RestoreStateStore } from '../../services/core/state/restore-state.js';
import type { QueueDefinition, SegmentRef } from '../../services/gen/tidemark/v1/store.js';
import type { RestoreProgress } from '../../services/gen/tidemark/v1/worker.js';
import { runRestoreTask } from '../../services/worker/restore-runner.js';
import { uniqueName } from '../helpers/services.js';
import { bodyMaker, codecCounts, connectAmqp, log, messageOptions, now, publishWindowed, rateText, spread, TARGETS, type BenchContext, type MessageSize, type Ratio } from './bench-kit.js';
import type { CapturedQueue } from './capture-efficiency.js';

interface Target {
  /** AMQP URL of the bench's vhost. */
  url: string;
  vhost: string;
}

/** Where a restore's time went. */
interface RestoreTimes {
  ms: number;
  /** From the call until the queue's data was verified (the worker marks the queue started next). */
  verifiedMs: number;
  /** Writes of the confirmed prefix to Redis. */
  progressWrites: number;
}

/** The worker's restore of the captured queue into `name`. */
async function tidemarkRestore(ctx: BenchContext, captured: CapturedQueue, target: Target, name: string, state: RestoreStateStore): Promise<RestoreTimes> {
  const { entry, store } = captured;
  const restoreId = uniqueName('bench');
  let last: RestoreProgress | undefined;
  let verifiedAt = NaN;
  let progressWrites = 0;
  const started = now();
  await runRestoreTask({
    task: {
      leaderToken: 0,
      restoreId,
      checkpoint: 1,
      targetAmqpUrl: '',
      queues: [
        {
          source: entry.definition,
          targetVhost: target.vhost,
          targetName: name,
          startOffset: entry.startOffset,
          cutOffset: entry.cutOffset,
          messages: entry.messages,
          bodyBytes: entry.bodyBytes,
          segments: entry.segments,
          recreate: true,
          bind: false,
          append: false,
          resumeCount: 0,
          resumeAfterOffset: -1,
          resumeFromTail: false,
          rateLimit: 0,
          started: false,
          possiblyAcked: 0,
          assignment: '',
        },
      ],
      exchanges: [],
      originHeaders: true,
      confirmWindow: ctx.defaults.confirmWindow,
    },
    store,
    defaultAmqpUrl: ctx.services.amqpUrl,
    workerId: 'bench',
    confirmWindow: ctx.defaults.confirmWindow,
    log: createLogger('bench/restore', 'warn'),
    emit: (progress) => void (last = progress),
    signal: new AbortController().signal,
    progress: {
      markStarted: (queueKey) => ((verifiedAt = now()), state.markStarted(restoreId, queueKey)),
      advance: (queueKey, confirmed, offset) => ((progressWrites += 1), state.advance(restoreId, queueKey, confirmed, offset)),
    },
  });
  const ms = now() - started;
  if (!last?.done || last.error || last.confirmed !== entry.messages) {
    throw new Error(`restore of ${entry.messages} messages ended with ${last?.confirmed ?? 0} confirmed: ${last?.error || 'no final progress'}`);
  }
  return { ms, verifiedMs: verifiedAt - started, progressWrites };
}

/** The same messages through a bare confirmed publisher into a fresh classic queue; milliseconds. */
async function barePublish(ctx: BenchContext, size: MessageSize, count: number, target: Target, name: string, origin?: QueueDefinition): Promise<number> {
  const body = bodyMaker(size.bytes);
  // What restore-runner.ts adds to each message (message i sits at journal offset i).
  const restoreId = uniqueName('bench');
  const options = (i: number): Options.Publish =>
    origin
      ? {
          ...messageOptions(i),
          mandatory: true,
          headers: {
            [ORIGIN_VHOST_HEADER]: origin.vhost,
            [ORIGIN_QUEUE_HEADER]: origin.name,
            [ORIGIN_OFFSET_HEADER]: i,
            [ORIGIN_CHECKPOINT_HEADER]: 1,
            [ORIGIN_RESTORE_HEADER]: restoreId,
          },
        }
      : messageOptions(i);
  const started = now();
  const connection = await connectAmqp(target.url);
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue(name, { durable: true });
    await publishWindowed(channel, count, ctx.defaults.confirmWindow, (i) => ({ exchange: '', routingKey: name, body: body(i), options: options(i) }));
    return now() - started;
  } finally {
    await connection.close().catch(() => {});
  }
}

/** The first message of each queue, minus what differs by design (the restore id), as JSON. */
async function firstMessages(url: string, names: string[]): Promise<string[]> {
  const connection = await connectAmqp(url);
  try {
    const channel = await connection.createChannel();
    const messages: string[] = [];
    for (const name of names) {
      const msg = await channel.get(name, { noAck: false });
      if (!msg) throw new Error(`${name} is empty`);
      const { headers = {}, ...properties } = msg.properties;
      const kept = Object.fromEntries(Object.entries(headers).filter(([k]) => k !== ORIGIN_RESTORE_HEADER).sort(([a], [b]) => a.localeCompare(b)));
      const set = Object.fromEntries(Object.entries(properties).filter(([, v]) => v !== undefined));
      messages.push(JSON.stringify({ body: msg.content.toString('latin1'), properties: set, headers: kept, hasRestoreId: ORIGIN_RESTORE_HEADER in headers }));
    }
    return messages;
  } finally {
    await connection.close().catch(() => {});
  }
}

async function deleteQueues(url: string, names: string[]): Promise<void> {
  const connection = await connectAmqp(url);
  try {
    const channel = await connection.createChannel();
    for (const name of names) await channel.deleteQueue(name);
  } finally {
    await connection.close().catch(() => {});
  }
}

/** Segments per codec named in their refs: what the restore's reader decompresses with. */
function segmentCodecs(segments: SegmentRef[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const s of segments) counts[s.codec] = (counts[s.codec] ?? 0) + 1;
  return counts;
}

export async function measureRestore(ctx: BenchContext, target: Target, size: MessageSize, captured: CapturedQueue, redis: Redis, namespace: string): Promise<Ratio> {
  const { entry } = captured;
  const count = entry.messages;
  const state = new RestoreStateStore(redis, namespace);
  const rates = { tidemark: [] as number[], amqplib: [] as number[], plain: [] as number[], paired: [] as number[] };
  const verifyShare: number[] = [];
  let lastRun: RestoreTimes | undefined;
  const sides = ['amqplib', 'tidemark', 'plain'] as const;
  for (let rep = 0; rep <= ctx.reps; rep += 1) {
    const label = size.label.toLowerCase();
    const names = { tidemark: `restored-${label}-${rep}`, amqplib: `published-${label}-${rep}`, plain: `plain-${label}-${rep}` };
    const result: Record<string, number> = {};
    try {
      // Each side goes first, second and third in turn.
      for (const side of [...sides.slice(rep % 3), ...sides.slice(0, rep % 3)]) {
        if (side !== 'tidemark') {
          result[side] = (count * 1000) / (await barePublish(ctx, size, count, target, names[side], side === 'amqplib' ? entry.definition : undefined));
        } else {
          lastRun = await tidemarkRestore(ctx, captured, target, names.tidemark, state);
          result[side] = (count * 1000) / lastRun.ms;
          if (rep > 0) verifyShare.push(lastRun.verifiedMs / lastRun.ms);
        }
      }
      if (rep === 0) {
        const [restored, published] = await firstMessages(target.url, [names.tidemark, names.amqplib]);
        if (restored !== published) throw new Error(`the baseline does not publish what the restore does: restored ${restored}, published ${published}`);
      }
    } finally {
      await deleteQueues(target.url, Object.values(names));
    }
    const what = rep === 0 ? 'warm-up' : `rep ${rep}/${ctx.reps}`;
    log(`restore ${size.label} ${what}: tidemark ${Math.round(result.tidemark)}/s, amqplib ${Math.round(result.amqplib)}/s (without origin headers ${Math.round(result.plain)}/s)`);
    if (rep === 0) continue;
    rates.tidemark.push(result.tidemark);
    rates.amqplib.push(result.amqplib);
    rates.plain.push(result.plain);
    rates.paired.push(result.tidemark / result.amqplib);
  }
  const tidemark = spread(rates.tidemark);
  const amqplib = spread(rates.amqplib);
  return {
    name: 'restore_efficiency',
    label: size.label,
    value: tidemark.median / amqplib.median,
    target: TARGETS.restore_efficiency,
    detail:
      `tidemark ${rateText(tidemark)}, amqplib ${rateText(amqplib)} (without origin headers ${rateText(spread(rates.plain))}); ${count} messages in ${entry.segments.length} segments (${codecCounts(segmentCodecs(entry.segments))}), confirm window ${ctx.defaults.confirmWindow}, ${ctx.reps} reps; ` +
      `tidemark's verification pass ${Math.round(100 * spread(verifyShare).median)}% of its time, ${lastRun?.progressWrites ?? 0} progress writes to Redis per restore`,
    paired: spread(rates.paired),
  };
}
