import { describe, expect, it } from 'vitest';
import { CoverageTracker, type CoverageSample } from '../../services/coordinator/coverage.js';

const SETTLE = 10_000;
const sample = (queue: string, published: number | undefined, captured: number | undefined): CoverageSample => ({ vhost: '/', queue, published, captured });

/**
 * Feeds passes one second apart of [published, captured] for queue q (a number alone repeats the
 * previous pass that many times: idle time); returns the reported gap after the last pass.
 */
function run(passes: Array<[number | undefined, number | undefined] | number>): number | undefined {
  const tracker = new CoverageTracker(SETTLE);
  let now = 0;
  let last: [number | undefined, number | undefined] = [undefined, undefined];
  for (const pass of passes) {
    const repeats = typeof pass === 'number' ? pass : 1;
    if (typeof pass !== 'number') last = pass;
    for (let i = 0; i < repeats; i += 1) tracker.observe([sample('q', last[0], last[1])], (now += 1_000));
  }
  return tracker.gaps().find((g) => g.queue === 'q')?.uncaptured;
}

describe('coverage tracking', () => {
  it('reports nothing while the journal keeps up with the queue, idle or not', () => {
    expect(run([[100, 40], 12, [150, 90], [400, 340], 12, [400, 340]])).toBeUndefined();
  });

  it('reports publishes the journal never received, against a baseline taken while idle, once seen on two passes', () => {
    // 7 default-exchange publishes after an idle baseline: the broker counts them, the journal not.
    expect(run([[100, 40], 12, [107, 40]])).toBeUndefined();
    expect(run([[100, 40], 12, [107, 40], [107, 40]])).toBe(7);
    expect(run([[100, 40], 12, [117, 50], [117, 50]])).toBe(7);
  });

  it('takes no baseline under traffic: the lag it would carry is not a gap', () => {
    // Statistics lagging 30 messages behind capture, never idle: no baseline, nothing reported.
    expect(run([[70, 100], [170, 200], [270, 300], [400, 400], [400, 400]])).toBeUndefined();
    // Idle later: the baseline comes from then.
    expect(run([[70, 100], [170, 200], [400, 400], 12, [405, 400], [405, 400]])).toBe(5);
  });

  it('counts a queue the broker reports no publishes for as 0 published', () => {
    expect(run([[undefined, 0], 12, [3, 0], [3, 0]])).toBe(3);
  });

  it('keeps reporting a gap that grows, and drops one that shrinks (capture catching up)', () => {
    expect(run([[0, 0], 12, [10, 0], [20, 0]])).toBe(20);
    expect(run([[0, 0], 12, [30, 0], [30, 20]])).toBeUndefined();
  });

  it('starts over when the broker counter goes backwards, and after a handoff re-read', () => {
    expect(run([[100, 0], 12, [150, 0], [10, 0], [10, 0]])).toBeUndefined();
    expect(run([[0, 0], 12, [50, 40], [50, 40], [50, 10]])).toBeUndefined();
    expect(run([[0, 0], 12, [50, 40], [50, 40], [50, 10], [50, 40], [50, 40]])).toBe(10);
  });

  it('lowers the baseline at a later idle moment with a smaller difference, and forgets queues no longer sampled', () => {
    // Idle at d=5 (a lagging statistic settled there), later idle at d=0: the gap is 0, not -5.
    expect(run([[5, 0], 12, [5, 0], [100, 100], 12, [100, 100]])).toBeUndefined();
    const tracker = new CoverageTracker(SETTLE);
    for (let t = 1; t <= 12; t += 1) tracker.observe([sample('a', 0, 0), sample('b', 0, 0)], t * 1_000);
    tracker.observe([sample('a', 5, 0), sample('b', 5, 0)], 13_000);
    tracker.observe([sample('a', 5, 0), sample('b', 5, 0)], 14_000);
    expect(tracker.gaps().map((g) => g.queue)).toEqual(['a', 'b']);
    tracker.observe([sample('a', 5, 0)], 15_000);
    expect(tracker.gaps().map((g) => g.queue)).toEqual(['a']);
  });

  it('counts the queues it cannot check yet: unsampled, or never idle long enough for a baseline', () => {
    const tracker = new CoverageTracker(SETTLE);
    expect(tracker.unchecked()).toBeUndefined();
    tracker.observe([sample('a', 0, 0), sample('b', 0, undefined)], 1_000);
    expect(tracker.unchecked()).toBe(2);
    for (let t = 2; t <= 11; t += 1) tracker.observe([sample('a', 0, 0), sample('b', 0, undefined)], t * 1_000);
    expect(tracker.unchecked()).toBe(1);
    // b's worker answers again: it starts its own settling time.
    tracker.observe([sample('a', 0, 0), sample('b', 0, 0)], 12_000);
    expect(tracker.unchecked()).toBe(1);
    for (let t = 13; t <= 22; t += 1) tracker.observe([sample('a', 0, 0), sample('b', 0, 0)], t * 1_000);
    expect(tracker.unchecked()).toBe(0);
    // A newly protected queue is unchecked until it has settled.
    tracker.observe([sample('a', 0, 0), sample('b', 0, 0), sample('c', 0, 0)], 23_000);
    expect(tracker.unchecked()).toBe(1);
  });

  it('names the path of a publish gap in its reason', () => {
    const tracker = new CoverageTracker(SETTLE);
    for (let t = 1; t <= 13; t += 1) tracker.observe([sample('q', 0, 0)], t * 1_000);
    for (let t = 14; t <= 15; t += 1) tracker.observe([sample('q', 7, 0)], t * 1_000);
    expect(tracker.gaps()).toEqual([expect.objectContaining({ queue: 'q', uncaptured: 7, reason: '7 published past its bindings (to the default exchange?)' })]);
  });
});

/** A pass of [published, captured, messages (depth), consumed (ack + no-ack deliveries)] for queue q. */
type Counts = [number, number, number, number];

/** Like `run`, with the broker's depth and consumed counters; returns the gap of q after the last pass. */
function runCounts(passes: Array<Counts | number>, paths: string[] = []) {
  const tracker = new CoverageTracker(SETTLE);
  let now = 0;
  let last: Counts = [0, 0, 0, 0];
  for (const pass of passes) {
    const repeats = typeof pass === 'number' ? pass : 1;
    if (typeof pass !== 'number') last = pass;
    const [published, captured, messages, consumed] = last;
    for (let i = 0; i < repeats; i += 1) tracker.observe([{ ...sample('q', published, captured), messages, consumed, paths }], (now += 1_000));
  }
  return tracker.gaps().find((g) => g.queue === 'q');
}

describe('coverage of arrivals without a publish (dead-lettering)', () => {
  it('counts messages that entered without a publish into a queue nobody consumes, once idle', () => {
    // 10 published and captured, then 5 dead-lettered in: the depth grows, publish does not.
    expect(runCounts([[10, 10, 10, 0], 12, [10, 10, 15, 0], 5])).toBeUndefined();
    expect(runCounts([[10, 10, 10, 0], 12, [10, 10, 15, 0], 12])).toEqual(
      expect.objectContaining({ uncaptured: 5, sourcePublished: 0, captured: 0, reason: '5 entered without a publish (dead-lettered?)' }),
    );
  });

  it('counts them when a consumer acknowledges them as they come', () => {
    expect(runCounts([[10, 10, 0, 10], 12, [10, 10, 0, 15], 12])?.uncaptured).toBe(5);
  });

  it('sees no gap in publishes that are consumed, nor in messages that leave unconsumed (expired, dropped)', () => {
    expect(runCounts([[10, 10, 0, 10], 12, [30, 30, 5, 25], 12])).toBeUndefined();
    // 4 expired: the lower bound falls, and the baseline with it; 2 dead-lettered in later count.
    expect(runCounts([[10, 10, 10, 0], 12, [10, 10, 6, 0], 12])).toBeUndefined();
    expect(runCounts([[10, 10, 10, 0], 12, [10, 10, 6, 0], 12, [10, 10, 8, 0], 12])?.uncaptured).toBe(2);
  });

  it('reads nothing under traffic: a depth ahead of the publish statistics is not a gap', () => {
    expect(runCounts([[10, 10, 10, 0], 12, [10, 10, 30, 0], [20, 20, 40, 0], [40, 40, 60, 0], [60, 60, 80, 0]])).toBeUndefined();
  });

  it('adds counted arrivals to uncaptured publishes, and starts over when the consumed counter goes back', () => {
    expect(runCounts([[10, 10, 10, 0], 12, [13, 10, 18, 0], 12])).toEqual(expect.objectContaining({ uncaptured: 8 }));
    expect(runCounts([[10, 10, 0, 10], 12, [10, 10, 5, 2], 12])).toBeUndefined();
  });

  it('reports a path the topology shows at once, before any baseline or message, and counts on it later', () => {
    const path = 'fed by dead-lettering from src';
    const tracker = new CoverageTracker(SETTLE);
    tracker.observe([{ ...sample('q', 0, undefined), paths: [path] }], 1_000);
    expect(tracker.gaps()).toEqual([{ vhost: '/', queue: 'q', sourcePublished: 0, captured: 0, uncaptured: 0, sinceMs: 0, reason: path }]);
    expect(runCounts([[0, 0, 0, 0], 12, [0, 0, 3, 0], 12], [path])).toEqual(expect.objectContaining({ uncaptured: 3, reason: `3 entered without a publish (dead-lettered?); ${path}` }));
    // The path goes away with the topology.
    tracker.observe([sample('q', 0, 0)], 2_000);
    expect(tracker.gaps()).toEqual([]);
  });
});
