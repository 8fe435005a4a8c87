/**
 * Shows a restore's event stream. With --json: one JSON object per event. On a terminal: the plan,
 * then progress bars (the whole restore, and each queue being published) redrawn in place, with a
 * permanent line above them for each queue that finishes. Otherwise (a pipe, a log file): plain
 * lines only, never an escape code, and a progress line at most every 2 s so logs stay readable.
 */
import { queueKey } from '../core/index.js';
import type { RestoreDone, RestoreEvent, RestorePlan } from '../gen/tidemark/v1/admin.js';
import type { RestoreProgress } from '../gen/tidemark/v1/worker.js';
import { bytes, restoreEventJson } from './output.js';

/** Where the display goes: process.stdout, or a test's fake. */
export interface RestoreViewOutput {
  write(s: string): void;
  /** Whether `write` reaches a terminal: bars redrawn in place if so, plain lines if not. */
  isTTY: boolean;
  /** Terminal width in columns. @default 80 */
  columns?: number;
}

export interface RestoreViewOptions {
  /** Print one compact JSON object per event instead of the human display. */
  json: boolean;
  /** Writes one line in --json and plain mode; must reach the same stream as `out`. @default writes the line to `out` */
  print?: (line: string) => void;
  /** The JSON shape of an event. @default restoreEventJson */
  toJson?: (event: RestoreEvent) => unknown;
  /** @default process.stdout */
  out?: RestoreViewOutput;
  /** Clock (epoch ms) for rates, ETAs and throttling. @default Date.now */
  now?: () => number;
}

/** Rates are measured over this much recent history, so they follow slowdowns within seconds. */
export const RATE_WINDOW_MS = 5_000;
/** Terminal redraws are at least this far apart. */
export const REDRAW_MS = 150;
/** Plain progress lines are at least this far apart. */
export const PLAIN_PROGRESS_MS = 2_000;
/** Per-queue bars shown at most; the rest are counted on one line. */
export const MAX_QUEUE_BARS = 8;

/** A cumulative count of messages published, at a time (epoch ms). */
export interface RateSample {
  at: number;
  count: number;
}

/** Messages per second and time left; undefined while unknown (too little history, or stalled). */
export interface Throughput {
  rate: number | undefined;
  etaMs: number | undefined;
}

/** A rate measured over less than this is too noisy to show. */
const MIN_SPAN_MS = 500;
/** Silence longer than this counts as slowing down; shorter is the normal gap between events. */
const STALL_GRACE_MS = 1_000;
/** Samples closer together than this are merged, which bounds a window's length. */
const SAMPLE_SPACING_MS = 100;

/**
 * Appends a sample and drops those no longer needed: the window keeps one sample at or before its
 * start, so a rate always spans the whole window once there is that much history.
 */
export function addSample(samples: readonly RateSample[], sample: RateSample, windowMs = RATE_WINDOW_MS): RateSample[] {
  const start = sample.at - windowMs;
  let first = 0;
  while (first + 1 < samples.length && samples[first + 1].at <= start) first += 1;
  const kept = samples.slice(first);
  if (kept.length >= 2 && sample.at - kept[kept.length - 1].at < SAMPLE_SPACING_MS) kept.pop();
  kept.push(sample);
  return kept;
}

/** The rate over the last `windowMs` before `now`, and the time `remaining` messages take at that rate. */
export function throughput(samples: readonly RateSample[], now: number, remaining: number, windowMs = RATE_WINDOW_MS): Throughput {
  const unknown = { rate: undefined, etaMs: remaining <= 0 ? 0 : undefined };
  if (samples.length === 0) return unknown;
  const start = now - windowMs;
  let base = samples[0];
  for (const s of samples) {
    if (s.at > start) break;
    base = s;
  }
  const latest = samples[samples.length - 1];
  // Up to the last sample while it is recent (events come every few hundred ms), up to `now` once
  // it is not: a stall then shows as a falling rate, and as 0 once the window holds no progress.
  const span = Math.max(latest.at, now - STALL_GRACE_MS) - base.at;
  // A lone sample inside the window says nothing yet; one older than the window means a stall.
  if (span < MIN_SPAN_MS || (base === latest && base.at > start)) return unknown;
  const rate = (Math.max(0, latest.count - base.count) * 1000) / span;
  const etaMs = remaining <= 0 ? 0 : rate > 0 ? (remaining / rate) * 1000 : undefined;
  return { rate, etaMs };
}

/** `5s`, `1m20s`, `2h05m`; seconds rounded up so a running ETA never shows 0s. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.ceil(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function formatRate(rate: number | undefined): string {
  if (rate === undefined) return '?/s';
  return rate >= 10_000 ? `${(rate / 1000).toFixed(0)}k/s` : `${Math.round(rate)}/s`;
}

const formatEta = (t: Throughput): string => `eta ${t.etaMs === undefined ? '?' : formatDuration(t.etaMs)}`;
const percent = (done: number, total: number): number => (total > 0 ? Math.floor((Math.min(done, total) * 100) / total) : 100);

/** One queue's state as the events tell it. `earlier`: finished in an earlier run of the restore. */
interface QueueState {
  label: string;
  total: number;
  confirmed: number;
  /** Published (not skipped) in this run: what rates are measured on. */
  published: number;
  samples: RateSample[];
  status: 'waiting' | 'active' | 'done' | 'failed' | 'earlier';
}

/** The counts behind both displays. */
class Tally {
  messages = 0;
  failed = 0;
  readonly queues = new Map<string, QueueState>();
  private samples: RateSample[] = [];
  private published = 0;

  constructor(private readonly now: () => number) {}

  plan(p: RestorePlan): void {
    this.messages = p.messages;
    for (const q of p.queues) {
      const status = q.finished ? 'earlier' : 'waiting';
      this.queues.set(queueKey(q.sourceVhost, q.sourceQueue), { label: `${q.sourceVhost}:${q.sourceQueue}`, total: q.messages, confirmed: q.alreadyConfirmed, published: 0, samples: [], status });
    }
    this.samples = [{ at: this.now(), count: 0 }];
  }

  progress(p: RestoreProgress): void {
    const key = queueKey(p.sourceVhost, p.sourceQueue);
    let q = this.queues.get(key);
    if (!q) {
      q = { label: `${p.sourceVhost}:${p.sourceQueue}`, total: p.total, confirmed: 0, published: 0, samples: [], status: 'waiting' };
      this.queues.set(key, q);
    }
    const at = this.now();
    // Skipped messages were already in the target: counting them would inflate the rate.
    const published = Math.max(q.published, p.confirmed - p.skipped);
    this.published += published - q.published;
    this.samples = addSample(this.samples, { at, count: this.published });
    q.published = published;
    q.samples = addSample(q.samples, { at, count: published });
    q.confirmed = Math.max(q.confirmed, p.confirmed);
    q.total = p.total || q.total;
    if (p.done && p.error && q.status !== 'failed') this.failed += 1;
    q.status = p.done ? (p.error ? 'failed' : 'done') : 'active';
  }

  done(d: RestoreDone): void {
    this.failed = Math.max(this.failed, d.failedQueues);
  }

  active(): QueueState[] {
    return [...this.queues.values()].filter((q) => q.status === 'active');
  }

  confirmed(): number {
    return [...this.queues.values()].reduce((sum, q) => sum + q.confirmed, 0);
  }

  /** Whole-restore throughput; the ETA counts only queues this run still has to publish. */
  throughput(): Throughput {
    const pending = [...this.queues.values()].filter((q) => q.status === 'waiting' || q.status === 'active');
    return throughput(this.samples, this.now(), pending.reduce((sum, q) => sum + Math.max(0, q.total - q.confirmed), 0));
  }

  queueThroughput(q: QueueState): Throughput {
    return throughput(q.samples, this.now(), q.total - q.confirmed);
  }
}

/** The plan as header lines: totals, settings, what a resume picks up, then one line per queue. */
export function planLines(p: RestorePlan): string[] {
  const lines = [`${p.dryRun ? 'plan (dry run)' : 'restoring'} checkpoint ${p.checkpoint}: ${p.queues.length} queue(s), ${p.messages} messages, ${bytes(p.bodyBytes)}`];
  const settings = [
    p.restoreId ? `restore ${p.restoreId}` : '',
    p.mode ? `mode ${p.mode}` : '',
    p.concurrency > 0 ? `concurrency ${p.concurrency}` : '',
    p.rateLimit > 0 ? `rate limit ${p.rateLimit}/s` : '',
    p.estimatedMs > 0 ? `estimated ${formatDuration(p.estimatedMs)}${p.estimateBasis ? ` (${p.estimateBasis})` : ''}` : '',
  ].filter(Boolean);
  if (settings.length > 0) lines.push(`  ${settings.join(', ')}`);
  if (p.resumed) {
    const already = p.queues.reduce((sum, q) => sum + q.alreadyConfirmed, 0);
    const finished = p.queues.filter((q) => q.finished).length;
    lines.push(`  resuming: ${already} of ${p.messages} messages already restored, ${finished} of ${p.queues.length} queue(s) finished in an earlier run`);
  }
  for (const q of p.queues) {
    const notes = [q.type, `${q.messages} messages${q.restoreFrom ? ` (${q.restoreFrom})` : ''}`, `${q.segments} segment(s)`, `worker ${q.workerId}`];
    if (q.bind) notes.push('with bindings');
    if (q.targetExists) notes.push('target exists');
    if (q.finished) notes.push('finished in an earlier run');
    else if (q.alreadyConfirmed > 0) notes.push(`${q.alreadyConfirmed} already restored`);
    lines.push(`  ${q.sourceVhost}:${q.sourceQueue} -> ${q.targetVhost}:${q.targetQueue} (${notes.join(', ')})${q.conflict ? `: CONFLICT ${q.conflict}` : ''}`);
    if (q.restoreFromReason) lines.push(`    ${q.restoreFrom}: ${q.restoreFromReason}`);
    if (q.possiblyAcked > 0) lines.push(`    the first ${q.possiblyAcked} may have been acknowledged before the cut (header x-tidemark-possibly-acked)`);
    if (q.predating > 0) lines.push(`    INCOMPLETE CONTENTS: about ${q.predating} message(s) held before protection began were never captured`);
    const o = q.outsideCut;
    if (o) lines.push(`    OUTSIDE THE CUT: restored as of checkpoint ${o.sinceEpoch}, not ${p.checkpoint}; it could not take part since ${new Date(o.sinceMs).toISOString()}: ${o.reason}`);
    for (const mark of q.incomplete) lines.push(`    POSSIBLY INCOMPLETE after journal offset ${mark.afterOffset} (checkpoint ${mark.epoch}): ${mark.reason}`);
  }
  const outside = p.queues.filter((q) => q.outsideCut).length;
  if (outside > 0) lines.push(`  ${outside} queue(s) are outside checkpoint ${p.checkpoint}'s cut: they restore an older state than the others (docs/OPERATIONS.md#queues-outside-the-cut)`);
  return lines;
}

/** The permanent line of a finished queue. */
export function finishedLine(p: RestoreProgress): string {
  const route = `${p.sourceVhost}:${p.sourceQueue} -> ${p.targetVhost}:${p.targetQueue}`;
  if (p.error) return `  FAILED ${route}: ${p.error}`;
  return `  done ${route}: ${p.confirmed}/${p.total}${p.skipped > 0 ? ` (${p.skipped} already in the target)` : ''}`;
}

export function summaryLine(d: RestoreDone): string {
  let line = `restore ${d.restoreId}: ${d.messages} messages into ${d.queues - d.failedQueues}/${d.queues} queue(s) in ${(d.durationMs / 1000).toFixed(1)}s`;
  if (d.failedQueues > 0) line += `; ${d.failedQueues} FAILED`;
  if (d.state === 'cancelled') line += `; cancelled, resume with "tidemark restore resume ${d.restoreId}"`;
  return line;
}

/** Shortens to `width` columns, cutting the middle: queue names often differ only at the end. */
function fit(text: string, width: number): string {
  if (text.length <= width) return text;
  if (width < 4) return text.slice(0, width);
  const tail = Math.floor((width - 1) / 2);
  return `${text.slice(0, width - 1 - tail)}…${text.slice(text.length - tail)}`;
}

/** `label [#####.....] 300/500  60% 100/s eta 2s`, never wider than `width`. */
export function barLine(label: string, done: number, total: number, t: Throughput, width: number, labelWidth: number): string {
  const stats = `${done}/${total} ${String(percent(done, total)).padStart(3)}% ${formatRate(t.rate)} ${formatEta(t)}`;
  const name = fit(label, labelWidth).padEnd(labelWidth);
  const barWidth = Math.min(50, width - name.length - stats.length - 4);
  if (barWidth < 5) return fit(`${name} ${stats}`, width);
  const filled = Math.round((barWidth * percent(done, total)) / 100);
  return `${name} [${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}] ${stats}`;
}

/** Bars redrawn in place: the cursor always sits just below them, `drawn` lines down. */
class TerminalView {
  private drawn = 0;
  private lastDraw = Number.NEGATIVE_INFINITY;
  private bars = false;

  constructor(
    private readonly out: RestoreViewOutput,
    private readonly tally: Tally,
    private readonly now: () => number,
  ) {}

  plan(p: RestorePlan): void {
    this.bars = !p.dryRun;
    this.draw(planLines(p));
  }

  progress(p: RestoreProgress): void {
    this.bars = true;
    if (p.done) this.draw([finishedLine(p)]);
    else if (this.now() - this.lastDraw >= REDRAW_MS) this.draw([]);
  }

  done(d: RestoreDone): void {
    this.bars = false;
    this.draw([summaryLine(d)]);
  }

  /** A stream cut short keeps its last bars, brought up to date, above the error that follows. */
  end(): void {
    if (this.drawn > 0) this.draw([]);
  }

  /** Replaces the bars with `permanent` lines followed by fresh bars, in one write. */
  private draw(permanent: string[]): void {
    let text = this.drawn > 0 ? `\x1b[${this.drawn}A\r\x1b[J` : '';
    for (const line of permanent) text += `${line}\n`;
    const frame = this.bars ? this.frame() : [];
    for (const line of frame) text += `${line}\n`;
    this.drawn = frame.length;
    this.lastDraw = this.now();
    if (text) this.out.write(text);
  }

  private frame(): string[] {
    // One column short of the width: a line that fills it wraps on some terminals, and a wrapped
    // line would throw off the cursor-up count of the next redraw.
    const width = Math.max(20, this.out.columns || 80) - 1;
    const active = this.tally.active();
    const shown = active.slice(0, MAX_QUEUE_BARS);
    // Sized for every queue of the plan, so the bars do not shift as queues start and finish.
    const labels = [...this.tally.queues.values()].map((q) => q.label.length + 2);
    const labelWidth = Math.min(Math.max(5, ...labels), Math.max(8, Math.floor(width * 0.3)));
    const lines = [barLine('total', this.tally.confirmed(), this.tally.messages, this.tally.throughput(), width, labelWidth)];
    for (const q of shown) lines.push(barLine(`  ${q.label}`, q.confirmed, q.total, this.tally.queueThroughput(q), width, labelWidth));
    if (active.length > shown.length) lines.push(fit(`  and ${active.length - shown.length} more`, width));
    return lines;
  }
}

/** Plain lines for pipes and log files. */
class PlainView {
  private lastLine: number;

  constructor(
    private readonly print: (line: string) => void,
    private readonly tally: Tally,
    private readonly now: () => number,
  ) {
    this.lastLine = now();
  }

  plan(p: RestorePlan): void {
    for (const line of planLines(p)) this.print(line);
    this.lastLine = this.now();
  }

  progress(p: RestoreProgress): void {
    if (p.done) this.print(finishedLine(p));
    const active = this.tally.active().length;
    if (active === 0 || this.now() - this.lastLine < PLAIN_PROGRESS_MS) return;
    this.lastLine = this.now();
    const confirmed = this.tally.confirmed();
    const t = this.tally.throughput();
    this.print(`progress ${confirmed}/${this.tally.messages} messages (${percent(confirmed, this.tally.messages)}%), ${formatRate(t.rate)}, ${formatEta(t)}, ${active} queue(s) active`);
  }

  done(d: RestoreDone): void {
    this.print(summaryLine(d));
  }

  end(): void {}
}

function stdout(): RestoreViewOutput {
  return {
    write: (s) => void process.stdout.write(s),
    get isTTY() {
      return process.stdout.isTTY === true;
    },
    get columns() {
      return process.stdout.columns;
    },
  };
}

/** Consumes the events; returns the number of queues that failed. */
export async function renderRestore(events: AsyncIterable<RestoreEvent>, options: RestoreViewOptions): Promise<number> {
  const out = options.out ?? stdout();
  const now = options.now ?? Date.now;
  const print = options.print ?? ((line: string) => out.write(`${line}\n`));
  const tally = new Tally(now);
  if (options.json) {
    const toJson = options.toJson ?? restoreEventJson;
    for await (const event of events) {
      print(JSON.stringify(toJson(event)));
      const e = event.event;
      if (e?.$case === 'progress') tally.progress(e.value);
      else if (e?.$case === 'done') tally.done(e.value);
    }
    return tally.failed;
  }
  const view = out.isTTY ? new TerminalView(out, tally, now) : new PlainView(print, tally, now);
  try {
    for await (const event of events) {
      const e = event.event;
      if (e?.$case === 'plan') {
        tally.plan(e.value);
        view.plan(e.value);
      } else if (e?.$case === 'progress') {
        tally.progress(e.value);
        view.progress(e.value);
      } else if (e?.$case === 'done') {
        tally.done(e.value);
        view.done(e.value);
      }
    }
  } finally {
    view.end();
  }
  return tally.failed;
}
