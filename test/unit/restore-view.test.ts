import { describe, expect, it } from 'vitest';
import type { PlannedQueue, RestoreDone, RestoreEvent, RestorePlan } from '../../services/gen/tidemark/v1/admin.js';
import type { RestoreProgress } from '../../services/gen/tidemark/v1/worker.js';
import { restoreEventJson } from '../../services/cli/output.js';
import { addSample, formatDuration, renderRestore, throughput, type RateSample } from '../../services/cli/restore-view.js';

const ESC = '\x1b';

function queue(name: string, messages: number, extra: Partial<PlannedQueue> = {}): PlannedQueue {
  return {
    sourceVhost: '/',
    sourceQueue: name,
    targetVhost: '/',
    targetQueue: `r.${name}`,
    type: 'classic',
    messages,
    bodyBytes: messages * 100,
    segments: 1,
    workerId: 'w1',
    bind: false,
    alreadyConfirmed: 0,
    finished: false,
    targetExists: false,
    conflict: '',
    incomplete: [],
    restoreFrom: 'contents',
    restoreFromReason: '',
    possiblyAcked: 0,
    predating: 0,
    outsideCut: undefined,
    ...extra,
  };
}

function plan(queues: PlannedQueue[], extra: Partial<RestorePlan> = {}): RestoreEvent {
  const value: RestorePlan = {
    restoreId: 'r7-abcd',
    checkpoint: 7,
    queues,
    messages: queues.reduce((sum, q) => sum + q.messages, 0),
    bodyBytes: 0,
    dryRun: false,
    estimatedMs: 80_000,
    estimateBasis: 'default rate of 1000 msg/s',
    resumed: false,
    mode: 'recreate',
    concurrency: 4,
    rateLimit: 0,
    ...extra,
  };
  return { event: { $case: 'plan', value } };
}

function progress(name: string, confirmed: number, total: number, extra: Partial<RestoreProgress> = {}): RestoreEvent {
  const value: RestoreProgress = {
    workerId: 'w1',
    sourceVhost: '/',
    sourceQueue: name,
    targetVhost: '/',
    targetQueue: `r.${name}`,
    confirmed,
    total,
    done: false,
    error: '',
    bodyBytes: 0,
    skipped: 0,
    ...extra,
  };
  return { event: { $case: 'progress', value } };
}

function done(extra: Partial<RestoreDone> = {}): RestoreEvent {
  return { event: { $case: 'done', value: { restoreId: 'r7-abcd', messages: 1000, queues: 2, failedQueues: 0, durationMs: 2100, state: 'done', ...extra } } };
}

/** A fake stdout and clock: each event is delivered at its time. */
function harness(isTTY: boolean, columns = 80) {
  let clock = 1_000_000;
  const writes: string[] = [];
  const out = { isTTY, columns, write: (s: string) => void writes.push(s) };
  async function* feed(steps: Array<[number, RestoreEvent]>): AsyncGenerator<RestoreEvent> {
    const start = clock;
    for (const [at, event] of steps) {
      clock = start + at;
      yield event;
    }
  }
  return { out, now: () => clock, writes, text: () => writes.join(''), feed };
}

/** q1 (500) and q2 (500) published at 200 msg/s each, an event every 50 ms per queue. */
function steadyRestore(): Array<[number, RestoreEvent]> {
  const steps: Array<[number, RestoreEvent]> = [[0, plan([queue('q1', 500), queue('q2', 500)])]];
  for (let t = 50; t <= 2500; t += 50) {
    const n = Math.min(500, t / 5);
    steps.push([t, progress('q1', n, 500, { done: n === 500 })]);
    steps.push([t, progress('q2', n, 500, { done: n === 500 })]);
  }
  steps.push([2600, done({ durationMs: 2600 })]);
  return steps;
}

describe('restore rate and ETA', () => {
  it('measures the rate over the window and the ETA of what remains', () => {
    let samples: RateSample[] = [];
    for (let t = 0; t <= 10_000; t += 250) samples = addSample(samples, { at: t, count: t / 2 }); // 500 msg/s
    const t = throughput(samples, 10_000, 1000, 5_000);
    expect(t.rate).toBeCloseTo(500, 5);
    expect(t.etaMs).toBeCloseTo(2000, 5);
    // Only the window (plus one sample at its start) is kept.
    expect(samples[0].at).toBe(5_000);
  });

  it('follows a slowdown within the window rather than averaging since the start', () => {
    let samples: RateSample[] = [];
    for (let t = 0; t <= 60_000; t += 250) samples = addSample(samples, { at: t, count: t < 50_000 ? t : 50_000 + (t - 50_000) / 10 });
    expect(throughput(samples, 60_000, 100, 5_000).rate).toBeCloseTo(100, 5);
  });

  it('falls to 0 with no ETA when publishing stalls for a whole window', () => {
    let samples: RateSample[] = [];
    for (let t = 0; t <= 2_000; t += 250) samples = addSample(samples, { at: t, count: t });
    // A second without events is the normal gap; after that the rate falls.
    expect(throughput(samples, 3_000, 10, 5_000).rate).toBeCloseTo(1000, 5);
    expect(throughput(samples, 4_000, 10, 5_000).rate).toBeCloseTo(2000 / 3, 5);
    const stalled = throughput(samples, 9_000, 10, 5_000);
    expect(stalled.rate).toBe(0);
    expect(stalled.etaMs).toBeUndefined();
  });

  it('does not guess a rate from a single sample or a very short span', () => {
    expect(throughput([{ at: 0, count: 10 }], 100, 10).rate).toBeUndefined();
    expect(throughput([{ at: 0, count: 0 }, { at: 100, count: 50 }], 200, 10).rate).toBeUndefined();
    expect(throughput([], 0, 0).etaMs).toBe(0);
  });

  it('formats durations as a person reads them', () => {
    expect(formatDuration(4_200)).toBe('5s');
    expect(formatDuration(80_000)).toBe('1m20s');
    expect(formatDuration(65_000)).toBe('1m05s');
    expect(formatDuration(2 * 3600_000 + 5 * 60_000)).toBe('2h05m');
  });
});

describe('renderRestore on a terminal', () => {
  it('draws a total bar and a bar per active queue, redrawn in place and throttled', async () => {
    const h = harness(true, 72);
    const failed = await renderRestore(h.feed(steadyRestore()), { json: false, out: h.out, now: h.now });
    expect(failed).toBe(0);
    const text = h.text();
    expect(text).toMatch(/^total +\[#+\.*\] \d+\/1000 +\d+% \d+\/s eta /m);
    expect(text).toMatch(/^ {2}\/:q1 +\[#+\.*\] \d+\/500 /m);
    // 100 progress events over 2.5 s: redraws at most every 150 ms, plus one per finished queue.
    const redraws = text.match(/\x1b\[\d+A\r\x1b\[J/g) ?? [];
    expect(redraws.length).toBeGreaterThan(5);
    expect(redraws.length).toBeLessThanOrEqual(2500 / 150 + 4);
    // Mid-restore, each queue is published at 200 msg/s, and the whole restore at about 400.
    expect(text).toMatch(/^ {2}\/:q2 +\[#+\.*\] \d+\/500 +\d+% 200\/s eta \ds$/m);
    expect(text).toMatch(/^total .* (3[89]\d|400)\/s eta \ds$/m);
    expect(text).toContain('  done /:q1 -> /:r.q1: 500/500\n');
    // The summary replaces the bars: nothing is drawn after it.
    expect(h.writes[h.writes.length - 1]).toMatch(/^\x1b\[\d+A\r\x1b\[Jrestore r7-abcd: 1000 messages into 2\/2 queue\(s\) in 2\.6s\n$/);
  });

  it('keeps every bar line within the terminal width', async () => {
    const h = harness(true, 40);
    const long = 'orders.eu-west-1.priority.retry.dead-letter';
    await renderRestore(h.feed([[0, plan([queue(long, 100)])], [200, progress(long, 10, 100)], [400, progress(long, 20, 100)]]), { json: false, out: h.out, now: h.now });
    const lastFrame = h.writes[h.writes.length - 1].split(/\x1b\[J/).pop()!;
    const lines = lastFrame.split('\n').filter(Boolean);
    expect(lines.length).toBe(2);
    for (const line of lines) expect(line.length).toBeLessThan(40);
  });

  it('shows at most 8 queue bars and counts the rest', async () => {
    const h = harness(true, 100);
    const names = Array.from({ length: 11 }, (_, i) => `q${i}`);
    const steps: Array<[number, RestoreEvent]> = [[0, plan(names.map((n) => queue(n, 100)))]];
    names.forEach((n, i) => steps.push([10 * i, progress(n, 1, 100)]));
    steps.push([500, progress('q0', 2, 100)]);
    await renderRestore(h.feed(steps), { json: false, out: h.out, now: h.now });
    const lastFrame = h.writes[h.writes.length - 1];
    expect(lastFrame.match(/^ {2}\/:q\d+ /gm)).toHaveLength(8);
    expect(lastFrame).toContain('  and 3 more\n');
  });
});

describe('renderRestore without a terminal', () => {
  it('prints plain lines, never an escape code, and a progress line at most every 2 s', async () => {
    const h = harness(false);
    const failed = await renderRestore(h.feed(steadyRestore()), { json: false, out: h.out, now: h.now });
    expect(failed).toBe(0);
    const text = h.text();
    expect(text).not.toContain(ESC);
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toBe('restoring checkpoint 7: 2 queue(s), 1000 messages, 0 B');
    expect(lines[1]).toBe('  restore r7-abcd, mode recreate, concurrency 4, estimated 1m20s (default rate of 1000 msg/s)');
    // The line comes with q1's event at 2 s (q1 at 400, q2 still at 390), both at 200 msg/s.
    expect(lines.filter((l) => l.startsWith('progress '))).toEqual(['progress 790/1000 messages (79%), 395/s, eta 1s, 2 queue(s) active']);
    expect(lines.filter((l) => l.startsWith('  done '))).toEqual(['  done /:q1 -> /:r.q1: 500/500', '  done /:q2 -> /:r.q2: 500/500']);
    expect(lines[lines.length - 1]).toBe('restore r7-abcd: 1000 messages into 2/2 queue(s) in 2.6s');
  });

  it('throttles progress lines of a long restore to one per 2 s', async () => {
    const h = harness(false);
    const steps: Array<[number, RestoreEvent]> = [[0, plan([queue('big', 100_000)])]];
    for (let t = 100; t <= 10_000; t += 100) steps.push([t, progress('big', t * 5, 100_000)]);
    await renderRestore(h.feed(steps), { json: false, out: h.out, now: h.now });
    const progressLines = h.text().split('\n').filter((l) => l.startsWith('progress '));
    expect(progressLines).toHaveLength(5);
    expect(progressLines[4]).toBe('progress 50000/100000 messages (50%), 5000/s, eta 10s, 1 queue(s) active');
  });

  it('reports failed queues in the count, their lines and the summary', async () => {
    const h = harness(false);
    const steps: Array<[number, RestoreEvent]> = [
      [0, plan([queue('q1', 10), queue('q2', 10)])],
      [100, progress('q1', 10, 10, { done: true })],
      [200, progress('q2', 3, 10, { done: true, error: 'target queue holds 5 message(s)' })],
      [300, done({ messages: 10, failedQueues: 1, state: 'failed', durationMs: 300 })],
    ];
    expect(await renderRestore(h.feed(steps), { json: false, out: h.out, now: h.now })).toBe(1);
    expect(h.text()).toContain('  FAILED /:q2 -> /:r.q2: target queue holds 5 message(s)\n');
    expect(h.text()).toContain('restore r7-abcd: 10 messages into 1/2 queue(s) in 0.3s; 1 FAILED\n');
  });

  it('counts queues the coordinator reports failed even without their progress events', async () => {
    const h = harness(false);
    const steps: Array<[number, RestoreEvent]> = [[0, plan([queue('q1', 10)])], [100, done({ failedQueues: 2, state: 'failed' })]];
    expect(await renderRestore(h.feed(steps), { json: false, out: h.out, now: h.now })).toBe(2);
  });

  it('shows what a resumed restore already did and lists queues finished earlier', async () => {
    const h = harness(false);
    const steps: Array<[number, RestoreEvent]> = [
      [0, plan([queue('q1', 500, { alreadyConfirmed: 500, finished: true }), queue('q2', 500, { alreadyConfirmed: 200, targetExists: true })], { resumed: true, rateLimit: 300 })],
      [1000, progress('q2', 250, 500, { skipped: 200 })],
      [2500, progress('q2', 500, 500, { skipped: 200, done: true })],
    ];
    await renderRestore(h.feed(steps), { json: false, out: h.out, now: h.now });
    const text = h.text();
    expect(text).toContain('  restore r7-abcd, mode recreate, concurrency 4, rate limit 300/s, estimated 1m20s (default rate of 1000 msg/s)\n');
    expect(text).toContain('  resuming: 700 of 1000 messages already restored, 1 of 2 queue(s) finished in an earlier run\n');
    expect(text).toContain('  /:q1 -> /:r.q1 (classic, 500 messages (contents), 1 segment(s), worker w1, finished in an earlier run)\n');
    expect(text).toContain('  /:q2 -> /:r.q2 (classic, 500 messages (contents), 1 segment(s), worker w1, target exists, 200 already restored)\n');
    expect(text).toContain('  done /:q2 -> /:r.q2: 500/500 (200 already in the target)\n');
  });

  it('shows the conflict a dry run found for a target', async () => {
    const h = harness(false);
    const conflict = 'target queue /:r.q1 holds 3 message(s) and mode is refuse';
    const steps: Array<[number, RestoreEvent]> = [[0, plan([queue('q1', 10, { targetExists: true, conflict })], { dryRun: true, mode: 'refuse' })], [10, done({ messages: 0, queues: 1, durationMs: 10 })]];
    await renderRestore(h.feed(steps), { json: false, out: h.out, now: h.now });
    expect(h.text()).toContain(`plan (dry run) checkpoint 7: 1 queue(s), 10 messages, 0 B\n`);
    expect(h.text()).toContain(`  /:q1 -> /:r.q1 (classic, 10 messages (contents), 1 segment(s), worker w1, target exists): CONFLICT ${conflict}\n`);
  });

  it('says which queues are outside the checkpoint\'s cut, as of which checkpoint, since when and why (G8)', async () => {
    const h = harness(false);
    const outsideCut = { sinceEpoch: 4, sinceMs: Date.UTC(2026, 11, 6, 15, 0), reason: 'journal tidemark.journal.q2 was deleted' };
    const steps: Array<[number, RestoreEvent]> = [[0, plan([queue('q1', 10), queue('q2', 5, { outsideCut })], { dryRun: true })], [10, done({ messages: 0, queues: 2, durationMs: 10 })]];
    await renderRestore(h.feed(steps), { json: false, out: h.out, now: h.now });
    expect(h.text()).toContain('    OUTSIDE THE CUT: restored as of checkpoint 4, not 7; it could not take part since 2026-12-06T15:00:00.000Z: journal tidemark.journal.q2 was deleted\n');
    expect(h.text()).toContain("  1 queue(s) are outside checkpoint 7's cut: they restore an older state than the others");
    expect(h.text().match(/OUTSIDE THE CUT/g)).toHaveLength(1);
    const json = restoreEventJson(steps[0][1]) as { queues: Array<{ outsideCut: unknown }> };
    expect(json.queues.map((q) => q.outsideCut)).toEqual([null, { sinceEpoch: 4, since: '2026-12-06T15:00:00.000Z', reason: 'journal tidemark.journal.q2 was deleted' }]);
  });

  it('tells how to resume a cancelled restore', async () => {
    const h = harness(false);
    const steps: Array<[number, RestoreEvent]> = [[0, plan([queue('q1', 10)])], [100, done({ messages: 4, queues: 1, durationMs: 100, state: 'cancelled' })]];
    expect(await renderRestore(h.feed(steps), { json: false, out: h.out, now: h.now })).toBe(0);
    expect(h.text()).toContain('restore r7-abcd: 4 messages into 1/1 queue(s) in 0.1s; cancelled, resume with "tidemark restore resume r7-abcd"\n');
  });
});

describe('renderRestore --json', () => {
  it('prints each event as one compact JSON line, even on a terminal, with the new fields', async () => {
    const h = harness(true);
    const steps = steadyRestore();
    const failed = await renderRestore(h.feed(steps), { json: true, out: h.out, now: h.now, toJson: restoreEventJson });
    expect(failed).toBe(0);
    expect(h.text()).not.toContain(ESC);
    const lines = h.text().trimEnd().split('\n');
    expect(lines).toEqual(steps.map(([, e]) => JSON.stringify(restoreEventJson(e))));
    const first = JSON.parse(lines[0]);
    expect(first).toMatchObject({ type: 'plan', estimatedMs: 80_000, resumed: false, mode: 'recreate', concurrency: 4, rateLimit: null });
    expect(first.queues[0]).toMatchObject({ source: { vhost: '/', queue: 'q1' }, alreadyConfirmed: 0, finished: false, targetExists: false, conflict: null });
    expect(JSON.parse(lines[1])).toMatchObject({ type: 'progress', confirmed: 10, skipped: 0 });
    expect(JSON.parse(lines[lines.length - 1])).toMatchObject({ type: 'done', state: 'done', failedQueues: 0 });
  });

  it('still counts failed queues', async () => {
    const h = harness(false);
    const steps: Array<[number, RestoreEvent]> = [[0, plan([queue('q1', 10)])], [100, progress('q1', 0, 10, { done: true, error: 'boom' })]];
    expect(await renderRestore(h.feed(steps), { json: true, out: h.out, now: h.now })).toBe(1);
  });
});
