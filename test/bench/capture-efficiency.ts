/**
 * Capture efficiency: messages per second one worker's capture code makes durable in segments ÷
 * what a bare amqplib consumer reads from the same journal stream with the same prefetch.
 *
 * A stream is filled once per size with N messages and two fences (as a round's coordinator
 * publishes them): fence 1 after the first R messages (the checkpoint the restore step restores;
 * a smaller R keeps that step short) and fence 2 at the end. Each repetition reads the stream
 * whole twice, in alternating order:
 * - amqplib: one consumer from the first offset, prefetch as the worker's, acking in batches of a
 *   quarter of the prefetch like queue-capture.ts, until it has every message;
 * - Tidemark: the real QueueCapture on its own channel, the worker's default segment size and
 *   codec (a new `auto` codec: gzip level 1 when a 16 KiB sample shrinks by a tenth and gzip keeps
 *   up with the flow, else identity; timed per segment as pick + compress of the codec picked, and counted
 *   by the codec picked), a real local-directory store opened as the worker opens it, the
 *   worker's flush tick running, prepare() called for both fences at attach (as two rounds waiting), timed from
 *   attach until prepare() of fence 2 returns: every record before it is in a segment the store
 *   has fsynced.
 * A segment holds 4 MiB of records (~21,800 of 128 B, ~1,000 of 4 KiB): N must span many of them,
 * or the last segment's write, which nothing overlaps, dominates the time.
 * The last repetition's segments and its QueueCheckpoint of fence 1 are kept for the restore step.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createLogger } from '../../services/core/infrastructure/log.js';
import { FENCE_EPOCH_HEADER, FENCE_NAMESPACE_HEADER, FENCE_ROUND_HEADER } from '../../services/core/format/names.js';
import { openStore } from '../../services/core/store/open-store.js';
import type { ObjectStore } from '../../services/core/store/object-store.js';
import type { QueueCheckpoint, QueueDefinition } from '../../services/gen/tidemark/v1/store.js';
import { QueueCapture } from '../../services/worker/queue-capture.js';
import { createAdaptiveCodec } from '../../services/core/format/segment-codec.js';
import { bodyMaker, checkJournalBudget, codecCounts, codecTimes, connectAmqp, log, messageOptions, now, pairOrder, partTimes, publishWindowed, rateText, spread, TARGETS, timedAdaptiveCodec, timedStore, type BenchContext, type CodecTimes, type MessageSize, type PartTimes, type Ratio } from './bench-kit.js';

const EXCHANGE = 'bench';
/** Fence 1 cuts the restore step's checkpoint, fence 2 ends the stream. */
const FENCES = [
  { epoch: 1, roundId: 'bench-round-1' },
  { epoch: 2, roundId: 'bench-round-2' },
];

/** Segments a capture wrote, for the restore step: the store stays open until the step's clean-up. */
export interface CapturedQueue {
  entry: QueueCheckpoint;
  store: ObjectStore;
}

export interface Stream {
  url: string;
  namespace: string;
  name: string;
  definition: QueueDefinition;
  /** Messages in it, fences not counted. */
  count: number;
  /** Messages before fence 1. */
  restoreCount: number;
}

/** Declares a stream bound to the bench exchange and fills it: `restoreCount` messages, fence 1, the rest up to `count`, fence 2. */
export async function fillStream(url: string, namespace: string, size: MessageSize, count: number, restoreCount: number): Promise<Stream> {
  const name = `journal-${size.label.toLowerCase()}`;
  const connection = await connectAmqp(url);
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertExchange(EXCHANGE, 'direct', { durable: true });
    await channel.assertQueue(name, { durable: true, arguments: { 'x-queue-type': 'stream' } });
    await channel.bindQueue(name, EXCHANGE, name);
    const body = bodyMaker(size.bytes);
    const started = now();
    const fence = ({ epoch, roundId }: (typeof FENCES)[number]) => {
      channel.publish(EXCHANGE, name, Buffer.from(JSON.stringify({ epoch })), {
        persistent: true,
        headers: { [FENCE_EPOCH_HEADER]: epoch, [FENCE_ROUND_HEADER]: roundId, [FENCE_NAMESPACE_HEADER]: namespace },
      });
      return channel.waitForConfirms();
    };
    const message = (i: number) => ({ exchange: EXCHANGE, routingKey: name, body: body(i), options: messageOptions(i) });
    await publishWindowed(channel, restoreCount, 2_000, message);
    await fence(FENCES[0]);
    await publishWindowed(channel, count - restoreCount, 2_000, (i) => message(restoreCount + i));
    await fence(FENCES[1]);
    log(`capture ${size.label}: stream ${name} filled with ${count} messages and two fences in ${((now() - started) / 1000).toFixed(1)} s`);
  } finally {
    await connection.close();
  }
  // The stream stands in for the journal of a classic queue of that name.
  const definition: QueueDefinition = { vhost: decodeURIComponent(new URL(url).pathname.slice(1)), name: `q-${size.label.toLowerCase()}`, type: 'classic', durable: true, autoDelete: false, arguments: undefined, bindings: [] };
  return { url, namespace, name, definition, count, restoreCount };
}

/** A bare amqplib consumer reads the whole stream (messages and fences); returns milliseconds. */
async function bareConsume(stream: Stream, prefetch: number): Promise<number> {
  const total = stream.count + FENCES.length;
  const connection = await connectAmqp(stream.url);
  try {
    const channel = await connection.createChannel();
    const batch = Math.max(1, Math.floor(prefetch / 4));
    const started = now();
    await channel.prefetch(prefetch, false);
    let received = 0;
    let unacked = 0;
    await new Promise<void>((resolve, reject) => {
      channel.on('error', reject);
      channel
        .consume(
          stream.name,
          (msg) => {
            if (msg === null) return reject(new Error(`the broker cancelled the consumer of ${stream.name}`));
            received += 1;
            unacked += 1;
            if (unacked >= batch || received === total) {
              channel.ack(msg, true);
              unacked = 0;
            }
            if (received === total) resolve();
          },
          { noAck: false, arguments: { 'x-stream-offset': 'first' } },
        )
        .catch(reject);
    });
    return now() - started;
  } finally {
    await connection.close().catch(() => {});
  }
}

/** Where a capture's time went: its segment flushes run one at a time, so their sum is the time the flush chain was busy. */
export interface FlushTimes {
  /** The codec's pick and the picked codec's compression, and which codec each segment got. */
  codec: CodecTimes;
  put: PartTimes;
  /** Sealing segments (encrypted stores only). */
  seal: PartTimes;
}

/**
 * The worker's capture of the stream into a fresh store in `dir`; milliseconds until fence 2's
 * prefix is durable. With `masterKey` (hex), the store is encrypted as a worker's with
 * TIDEMARK_MASTER_KEY is (encryption-cost.ts).
 */
export async function tidemarkCapture(stream: Stream, ctx: BenchContext, dir: string, masterKey?: string): Promise<{ ms: number; captured: CapturedQueue; flushes: FlushTimes }> {
  const store = await openStore({ store: pathToFileURL(dir).href, s3Region: 'us-east-1', masterKey });
  // As a worker does when it starts (worker.ts), before any capture.
  await store.vault?.prepare();
  const connection = await connectAmqp(stream.url);
  const flushes: FlushTimes = { codec: codecTimes(), put: partTimes(), seal: partTimes() };
  const capture = new QueueCapture({
    namespace: stream.namespace,
    assignment: { definition: stream.definition, journal: stream.name, resumeOffset: 0, baseEpoch: 0, baseMessages: 0, baseBodyBytes: 0, startOffset: 0, baseHeadOffset: 0, baseHeadMessages: 0, basePredating: 0, baseHeadKnown: false },
    // The worker's store and codec (QueueCapture's default, a new adaptive codec), timed.
    store: timedStore(store, { put: flushes.put, get: partTimes(), seal: flushes.seal }),
    codec: timedAdaptiveCodec(createAdaptiveCodec(), flushes.codec),
    log: createLogger('bench/capture', 'warn'),
    segmentBytes: ctx.defaults.segmentBytes,
    prefetch: ctx.defaults.prefetch,
  });
  const tick = setInterval(() => capture.tick(), ctx.defaults.flushInterval);
  const deadline = new AbortController();
  const limit = setTimeout(() => deadline.abort(), 600_000);
  try {
    const channel = await connection.createChannel();
    const started = now();
    await capture.attach(channel);
    const [entry, all] = await Promise.all(FENCES.map((f) => capture.prepare(f.epoch, f.roundId, deadline.signal)));
    const ms = now() - started;
    if (all.messages !== stream.count) throw new Error(`capture holds ${all.messages} messages before fence 2, not ${stream.count}`);
    if (entry.messages !== stream.restoreCount) throw new Error(`capture holds ${entry.messages} messages before fence 1, not ${stream.restoreCount}`);
    return { ms, captured: { entry, store }, flushes };
  } catch (err) {
    await store.close();
    throw err;
  } finally {
    clearInterval(tick);
    clearTimeout(limit);
    await capture.detach();
    await connection.close().catch(() => {});
  }
}

/** Runs the capture comparison for one size; returns its ratio and the last capture's segments. */
export async function measureCapture(ctx: BenchContext, url: string, namespace: string, size: MessageSize): Promise<{ ratio: Ratio; captured: CapturedQueue }> {
  checkJournalBudget('capture', size, ctx.counts.capture[size.label]);
  const stream = await fillStream(url, namespace, size, ctx.counts.capture[size.label], Math.min(ctx.counts.restore[size.label], ctx.counts.capture[size.label]));
  const prefetch = ctx.defaults.prefetch;
  let kept: { dir: string; captured: CapturedQueue } | undefined;
  const forget = async (k: typeof kept) => {
    if (!k) return;
    await k.captured.store.close();
    rmSync(k.dir, { recursive: true, force: true });
  };
  ctx.cleanUps.add(`capture store of ${size.label}`, () => forget(kept));
  const busy: number[] = [];
  let last: FlushTimes | undefined;
  const runTidemark = async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tm-bench-capture-'));
    try {
      const { ms, captured, flushes } = await tidemarkCapture(stream, ctx, dir);
      await forget(kept);
      kept = { dir, captured };
      busy.push((flushes.codec.total.ms + flushes.put.ms) / ms);
      last = flushes;
      return ms;
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  };
  const rates = { tidemark: [] as number[], amqplib: [] as number[], paired: [] as number[] };
  for (let rep = 0; rep <= ctx.reps; rep += 1) {
    const result: Record<string, number> = {};
    for (const side of pairOrder(rep, 'amqplib', 'tidemark')) {
      const ms = side === 'amqplib' ? await bareConsume(stream, prefetch) : await runTidemark();
      result[side] = (stream.count * 1000) / ms;
    }
    const what = rep === 0 ? 'warm-up' : `rep ${rep}/${ctx.reps}`;
    log(`capture ${size.label} ${what}: tidemark ${Math.round(result.tidemark)}/s, amqplib ${Math.round(result.amqplib)}/s`);
    if (rep === 0) continue;
    rates.tidemark.push(result.tidemark);
    rates.amqplib.push(result.amqplib);
    rates.paired.push(result.tidemark / result.amqplib);
  }
  const tidemark = spread(rates.tidemark);
  const amqplib = spread(rates.amqplib);
  const perSegment = (t: PartTimes, digits = 0) => (t.calls > 0 ? (t.ms / t.calls).toFixed(digits) : 'n/a');
  const flushes = last
    ? `; ${last.put.calls} segments of ${ctx.defaults.segmentBytes >> 20} MiB (${codecCounts(last.codec.picked)}), ` +
      `each codec pick + compress ${perSegment(last.codec.total)} ms (pick ${perSegment(last.codec.pick, 1)} ms) + store put ${perSegment(last.put)} ms; ` +
      `flush chain busy ${Math.round(100 * spread(busy.slice(1)).median)}% of the capture time`
    : '';
  return {
    ratio: {
      name: 'capture_efficiency',
      label: size.label,
      value: tidemark.median / amqplib.median,
      target: TARGETS.capture_efficiency,
      detail: `tidemark ${rateText(tidemark)}, amqplib ${rateText(amqplib)}; ${stream.count} messages, prefetch ${prefetch}, ${ctx.reps} reps${flushes}`,
      paired: spread(rates.paired),
    },
    captured: kept!.captured,
  };
}
