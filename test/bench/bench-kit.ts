/**
 * What every step of `npm run bench` shares: the services, a context with the defaults a worker
 * runs with, message bodies, a windowed confirmed publisher, repetition statistics, ratio lines
 * and the clean-up list that also runs on SIGINT.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import amqp, { type ChannelModel, type ConfirmChannel, type Options } from 'amqplib';
import { configSchema, type Config } from '../../services/core/infrastructure/config.js';
import type { AdaptiveCodec, SegmentCodec } from '../../services/core/format/segment-codec.js';
import type { ObjectStore } from '../../services/core/store/object-store.js';
import type { Vault } from '../../services/core/crypto/vault.js';
import type { TestServices } from '../helpers/services.js';

export const env = (name: string) => (process.env[name] === '' ? undefined : process.env[name]);
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
export const log = (line: string) => console.log(`[bench ${new Date().toISOString().slice(11, 23)}] ${line}`);
export const now = () => performance.now();

/** RabbitMQ and Redis as `npm run chaos` and `bench:scale` find them; the store is always a local directory. */
export function servicesFromEnv(): TestServices {
  return {
    amqpUrl: env('TIDEMARK_TEST_AMQP_URL') ?? 'amqp://guest:guest@localhost:5672',
    managementUrl: env('TIDEMARK_TEST_MANAGEMENT_URL') ?? 'http://guest:guest@localhost:15672',
    redisUrl: env('TIDEMARK_TEST_REDIS_URL') ?? 'redis://localhost:6379',
    s3: { endpoint: '', accessKey: '', secretKey: '', region: 'us-east-1' },
  };
}

/**
 * An AMQP connection whose 'error' events are heard: a failure surfaces through the calls made on
 * it, and a vhost deleted under it (clean-up after SIGINT) must not crash the clean-up itself.
 */
export async function connectAmqp(url: string): Promise<ChannelModel> {
  const connection = await amqp.connect(url);
  connection.on('error', () => {});
  return connection;
}

/** The two message sizes every throughput figure is taken at. */
export interface MessageSize {
  label: '128B' | '4KiB';
  bytes: number;
}
export const SIZES: MessageSize[] = [
  { label: '128B', bytes: 128 },
  { label: '4KiB', bytes: 4096 },
];

/** Messages per measurement, per size: the quick run's and the full run's. */
export interface Counts {
  /** Messages in the stream the capture step reads. */
  capture: Record<MessageSize['label'], number>;
  /** Messages of the checkpoint the restore step restores (a prefix of the capture step's stream). */
  restore: Record<MessageSize['label'], number>;
  overhead: Record<MessageSize['label'], number>;
  producer: Record<MessageSize['label'], number>;
}

export interface BenchContext {
  services: TestServices;
  /** Repetitions measured per figure, after one warm-up. */
  reps: number;
  counts: Counts;
  /** Rounds per queue count for the round-latency figure. */
  rounds: number;
  /** The defaults a worker runs with (segment size, prefetch, confirm window, flush interval). */
  defaults: Config;
  cleanUps: CleanUps;
}

export function workerDefaults(): Config {
  return configSchema.parse({});
}

const pools = new Map<number, Buffer[]>();

/**
 * Bodies of `bytes` bytes: the message number, then base64 text of random bytes (so gzip saves
 * about a quarter, as on typical text payloads, rather than nothing or everything). Message i is
 * the same in every step of a run, so a baseline sends exactly the messages Tidemark handled.
 */
export function bodyMaker(bytes: number): (i: number) => Buffer {
  let pool = pools.get(bytes);
  if (!pool) pools.set(bytes, (pool = Array.from({ length: 64 }, () => Buffer.from(randomBytes(bytes).toString('base64').slice(0, bytes)))));
  const bodies = pool;
  return (i) => {
    const body = Buffer.from(bodies[i % bodies.length]);
    body.write(`${i}:`, 0, 'latin1');
    return body;
  };
}

/**
 * RabbitMQ starts a new stream segment file every 500 MB (x-stream-max-segment-size-bytes), and
 * the entry it writes first takes an offset AMQP consumers never see. Capture reads across such
 * holes (test/integration/journal-segments.test.ts); the bench still keeps every stream it fills
 * within one segment file, with a margin for fences and per-message overhead, so that each figure
 * measures the same thing from run to run. This refuses counts that would not fit.
 */
export function checkJournalBudget(what: string, size: MessageSize, messages: number): void {
  const perMessage = size.bytes + 150; // body, properties and stream entry overhead, as measured
  const budget = 450_000_000;
  if (messages * perMessage > budget) {
    throw new Error(
      `${what}: ${messages} messages of ${size.label} would pass RabbitMQ's 500 MB stream segment file size, which the bench stays within; ` +
        `keep it under ${Math.floor(budget / perMessage)} messages`,
    );
  }
}

/** Properties of every benchmark message (restore republishes them as captured). */
export const messageOptions = (i: number): Options.Publish => ({ persistent: true, messageId: `m-${i}`, contentType: 'application/octet-stream' });

/**
 * Publishes `count` messages on a confirm channel keeping at most `window` unconfirmed: what a
 * careful producer (and Tidemark's restore) does. Resolves once every message is confirmed.
 */
export async function publishWindowed(
  channel: ConfirmChannel,
  count: number,
  window: number,
  message: (i: number) => { exchange: string; routingKey: string; body: Buffer; options?: Options.Publish },
): Promise<void> {
  let outstanding = 0;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  for (let i = 0; i < count; i += 1) {
    while (outstanding >= window && !failure) await new Promise<void>((resolve) => (wake = resolve));
    if (failure) throw failure;
    const { exchange, routingKey, body, options } = message(i);
    outstanding += 1;
    const written = channel.publish(exchange, routingKey, body, options ?? {}, (err) => {
      outstanding -= 1;
      if (err) failure ??= new Error(`the broker nacked message ${i}`);
      const resume = wake;
      wake = undefined;
      resume?.();
    });
    if (!written) await new Promise<void>((resolve) => channel.once('drain', () => resolve()));
  }
  await channel.waitForConfirms();
  if (failure) throw failure;
}

/** Median and range of a figure over the measured repetitions. */
export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function spread(values: number[]): Spread {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1], n: sorted.length };
}

const int = (n: number) => (Number.isFinite(n) ? String(Math.round(n)) : 'n/a');
const fixed = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

/** "41200/s (39800-42000)": a rate's median and its range. */
export const rateText = (s: Spread) => `${int(s.median)}/s (${int(s.min)}-${int(s.max)})`;
export const msText = (n: number) => `${int(n)} ms`;

/** A figure the issue sets a target for. */
export interface Ratio {
  name: 'capture_efficiency' | 'restore_efficiency' | 'round_overhead' | 'round_p99_over_floor' | 'producer_impact' | 'store_growth' | 'encryption_cost';
  /** Message size or queue count. */
  label: string;
  value: number;
  target?: { op: '>=' | '<='; value: number };
  /** Numerator and denominator with their spreads, or why it was not measured. */
  detail: string;
  /** Per-repetition ratios (each a measurement against its adjacent baseline), when they exist. */
  paired?: Spread;
  error?: string;
}

export const TARGETS: Partial<Record<Ratio['name'], { op: '>=' | '<='; value: number }>> = {
  capture_efficiency: { op: '>=', value: 0.9 },
  restore_efficiency: { op: '>=', value: 0.9 },
  round_overhead: { op: '>=', value: 0.97 },
  round_p99_over_floor: { op: '<=', value: 3 },
  store_growth: { op: '<=', value: 1.1 },
  encryption_cost: { op: '>=', value: 0.9 },
};

export function met(r: Ratio): boolean | undefined {
  if (!r.target || !Number.isFinite(r.value)) return r.target ? false : undefined;
  return r.target.op === '>=' ? r.value >= r.target.value : r.value <= r.target.value;
}

/** One stable, greppable line: `ratio <name> <label> <value> target <op><t> <met|NOT met> (<detail>)`. */
export function ratioLine(r: Ratio): string {
  const target = r.target ? `target ${r.target.op}${r.target.value} ${met(r) ? 'met' : 'NOT met'}` : 'target none';
  const paired = r.paired && r.paired.n > 0 ? `; per-rep ratio ${fixed(r.paired.min)}-${fixed(r.paired.max)}` : '';
  const body = r.error ? `not measured: ${r.error}` : `${r.detail}${paired}`;
  return `ratio ${r.name} ${r.label} ${fixed(r.value)} ${target} (${body})`;
}

export function failedRatio(name: Ratio['name'], label: string, err: unknown): Ratio {
  return { name, label, value: NaN, target: TARGETS[name], detail: '', error: ((err as Error)?.message ?? String(err)).slice(0, 400) };
}

/**
 * Clean-up actions, run newest first: at the end of each step, and all that remain on a failure,
 * SIGINT or SIGTERM. Each logs its own failure and the rest still run.
 */
export class CleanUps {
  private readonly actions: Array<{ what: string; run: () => Promise<void> }> = [];

  /** Registers `run`; the returned function runs it now (once) and forgets it. */
  add(what: string, run: () => Promise<void>): () => Promise<void> {
    const action = { what, run };
    this.actions.push(action);
    return async () => {
      const at = this.actions.indexOf(action);
      if (at < 0) return;
      this.actions.splice(at, 1);
      await this.attempt(action);
    };
  }

  async runAll(): Promise<void> {
    for (let action = this.actions.pop(); action; action = this.actions.pop()) await this.attempt(action);
  }

  private async attempt(action: { what: string; run: () => Promise<void> }): Promise<void> {
    try {
      await action.run();
    } catch (err) {
      log(`LEFT BEHIND: ${action.what}: ${(err as Error).message}`);
    }
  }
}

/** Order of a pair in repetition `rep`: alternating, so neither side always runs on a warmer broker. */
export function pairOrder<T>(rep: number, first: T, second: T): [T, T] {
  return rep % 2 === 0 ? [first, second] : [second, first];
}

/** Calls to one part of the pipeline and the time they took (overlapping calls add up). */
export interface PartTimes {
  calls: number;
  ms: number;
}

export const partTimes = (): PartTimes => ({ calls: 0, ms: 0 });

async function timedCall<T>(times: PartTimes, call: () => Promise<T>): Promise<T> {
  const started = now();
  try {
    return await call();
  } finally {
    times.calls += 1;
    times.ms += now() - started;
  }
}

/**
 * The same store, timing its puts and gets (and with `seal`, its vault's sealing of segments):
 * where a capture's or a restore's time goes.
 */
export function timedStore(store: ObjectStore, times: { put: PartTimes; get: PartTimes; seal?: PartTimes }): ObjectStore {
  const { vault } = store;
  const seal = times.seal;
  return {
    url: store.url,
    // encodeSegment calls only seal on the capture path.
    vault: vault && seal ? ({ seal: (plain, purpose) => timedCall(seal, () => vault.seal(plain, purpose)) } as Pick<Vault, 'seal'> as Vault) : vault,
    put: (key, body) => timedCall(times.put, () => store.put(key, body)),
    get: (key, options) => timedCall(times.get, () => store.get(key, options)),
    has: (key) => store.has(key),
    list: (prefix) => store.list(prefix),
    listObjects: (prefix) => store.listObjects(prefix),
    delete: (key) => store.delete(key),
    close: () => store.close(),
  };
}

/** The same codec under the same name, timing compression. */
export function timedCodec(codec: SegmentCodec, compress: PartTimes): SegmentCodec {
  return { name: codec.name, compress: (b) => timedCall(compress, () => codec.compress(b)), decompress: (b) => codec.decompress(b) };
}

/** What an adaptive codec did: its picks' time, and pick + compress per segment, by the codec picked. */
export interface CodecTimes {
  /** The (synchronous) picks alone. */
  pick: PartTimes;
  /** Pick plus the picked codec's compression, one call per segment. */
  total: PartTimes;
  /** Segments per picked codec name, e.g. { gzip: 12, identity: 2 }. */
  picked: Record<string, number>;
}

export const codecTimes = (): CodecTimes => ({ pick: partTimes(), total: partTimes(), picked: {} });

/**
 * The same adaptive codec, timing each segment's pick and the compression by the codec it picks
 * (returned under that codec's name, so the SegmentRef names it as without the timing).
 */
export function timedAdaptiveCodec(codec: AdaptiveCodec, times: CodecTimes): AdaptiveCodec {
  return {
    name: codec.name,
    pick(encoded) {
      const started = now();
      const chosen = codec.pick(encoded);
      const pickMs = now() - started;
      times.pick.calls += 1;
      times.pick.ms += pickMs;
      times.picked[chosen.name] = (times.picked[chosen.name] ?? 0) + 1;
      return {
        name: chosen.name,
        compress: async (b) => {
          times.total.ms += pickMs;
          return timedCall(times.total, () => chosen.compress(b));
        },
        decompress: (b) => chosen.decompress(b),
      };
    },
  };
}

/** "12 gzip, 0 identity": segments per codec name (gzip and identity always listed). */
export function codecCounts(picked: Record<string, number>): string {
  const counts: Record<string, number> = { gzip: 0, identity: 0, ...picked };
  return Object.entries(counts)
    .map(([name, n]) => `${n} ${name}`)
    .join(', ');
}

/**
 * Replaces the doc's section between the markers `<!-- <tag> -->` and `<!-- /<tag> -->` with
 * `body` (markers included), or appends it; a missing file starts with `header`. Each run kind
 * of a bench owns its section, so a run never rewrites another's figures or the prose around them.
 */
export function replaceDocSection(path: string, tag: string, body: string[], header: string): void {
  const [begin, end] = [`<!-- ${tag} -->`, `<!-- /${tag} -->`];
  const section = [begin, ...body, end].join('\n');
  const text = existsSync(path) ? readFileSync(path, 'utf8') : header;
  const at = text.indexOf(begin);
  const until = text.indexOf(end);
  const next = at >= 0 && until > at ? `${text.slice(0, at)}${section}${text.slice(until + end.length)}` : `${text.trimEnd()}\n\n${section}\n`;
  writeFileSync(path, next);
}
