/**
 * Deterministic simulation of checkpoint rounds (test/sim): the real CheckpointRound driven by
 * modelled coordinators, workers, Redis, store and broker, under seeded schedules that lose,
 * duplicate, delay and reorder messages and crash, pause and restart processes. Every step is
 * checked against the invariants in test/sim/invariants.ts.
 *
 * Environment (read here only):
 * - SIM_SEED=N runs that one schedule and nothing else; SIM_OPTIONS='{"variant":...}' pins options
 *   (a failure prints the exact command); SIM_TRACE=1 prints its whole trace.
 * - SIM_SEEDS (default 10000) and SIM_FIRST_SEED (default 1) choose the seeds of the main run;
 *   SIM_OPTIONS pins options of the main run too (say '{"faults":{"redisLoss":0.1}}', or
 *   '{"pauseBetweenCheckAndWrite":true}').
 * Redis loss is part of the seeded mix (options.ts optionsFor).
 */
import { describe, expect, it } from 'vitest';
import { mergeOverrides, VARIANTS, type OptionOverrides, type Variant } from '../sim/options.js';
import type { InvariantName } from '../sim/invariants.js';
import { REGRESSIONS } from '../sim/regressions.js';
import { describeFailure, simulate, type SimResult } from '../sim/simulation.js';

const replaySeed = process.env.SIM_SEED === undefined || process.env.SIM_SEED === '' ? undefined : Number(process.env.SIM_SEED);
const replayOptions: OptionOverrides = process.env.SIM_OPTIONS ? (JSON.parse(process.env.SIM_OPTIONS) as OptionOverrides) : {};
const seeds = Number(process.env.SIM_SEEDS ?? 10_000);
const firstSeed = Number(process.env.SIM_FIRST_SEED ?? 1);

/** The invariant each broken variant must be caught on, and within how many seeds. */
const CAUGHT_BY: Record<Variant, InvariantName> = {
  'commit-on-timeout': 'complete-manifest',
  'manifest-before-decision': 'fenced-writes',
  'adopt-base-on-commit-record': 'visible-base',
  'abort-when-in-doubt': 'single-outcome',
  'vote-before-durable': 'exact-prefix',
  'unfenced-decisions': 'fenced-writes',
  'presume-commit': 'convergence',
  'adopt-uncounted-base': 'counted-base',
  'gc-deletes-bases': 'retained-verifies',
  'gc-without-grace': 'exact-prefix',
};
const VARIANT_SEEDS = 400;

if (replaySeed !== undefined) {
  describe('simulation replay', () => {
    it(`seed ${replaySeed} keeps every invariant`, () => {
      const result = simulate(replaySeed, { ...replayOptions, fullTrace: process.env.SIM_TRACE === '1' });
      if (result.trace) console.log(result.trace.join('\n'));
      console.log(`seed ${replaySeed}: ${result.steps} steps, ${result.endedAtMs} virtual ms, trace hash ${result.traceHash}, ${JSON.stringify(result.stats)}`);
      expect(result.violation, describeFailure(result, replayOptions)).toBeUndefined();
    });
  });
} else {
  describe('simulation: regression seeds', () => {
    for (const r of REGRESSIONS) {
      it(`seed ${r.seed} still finds: ${r.bug}`, () => {
        // The seeds were found before the leader pruned: without it, their schedules are the same.
        const context = mergeOverrides({ gc: false }, r.context);
        const overrides = mergeOverrides(context, r.broken);
        const found = simulate(r.seed, overrides);
        expect(found.violation?.invariant, describeFailure(found, overrides)).toBe(r.violates);
        if (r.broken) {
          // The same schedule, with the bug fixed (or the variant unbroken), keeps every invariant.
          const fixed = simulate(r.seed, context);
          expect(fixed.violation, describeFailure(fixed, context)).toBeUndefined();
        }
      });
    }
  });

  describe('simulation of checkpoint rounds under faults', () => {
    it(`${seeds} seeded schedules keep every invariant after every step`, () => {
      const started = performance.now();
      const failures: SimResult[] = [];
      const totals: Record<string, number> = {};
      let steps = 0;
      let withCheckpoint = 0;
      for (let seed = firstSeed; seed < firstSeed + seeds; seed += 1) {
        const result = simulate(seed, replayOptions);
        steps += result.steps;
        if (result.stats.committed > 0) withCheckpoint += 1;
        for (const [key, value] of Object.entries(result.stats)) totals[key] = (totals[key] ?? 0) + value;
        if (result.violation) failures.push(result);
      }
      const ms = Math.round(performance.now() - started);
      console.log(`simulation: ${seeds} schedules, ${steps} steps, ${ms} ms; ${JSON.stringify(totals)}`);
      const others = failures.slice(1, 10).map((f) => `${f.seed} (${f.violation!.invariant})`);
      expect(failures.length, failures.length === 0 ? '' : `${describeFailure(failures[0], replayOptions)}${others.length ? `\nalso failing: ${others.join(', ')}` : ''}`).toBe(0);
      // The schedules must exercise the protocol, not pass by doing nothing (checked on big runs).
      if (seeds < 1_000 || Object.keys(replayOptions).length > 0) return;
      expect(withCheckpoint).toBeGreaterThan(seeds * 0.5);
      // Fewer than before G8: a queue that cannot take part no longer aborts its round.
      expect(totals.aborted).toBeGreaterThan(seeds / 5);
      expect(totals.presumedAborted).toBeGreaterThan(seeds / 20);
      expect(totals.finished).toBeGreaterThan(seeds / 100);
      // Workers ask only two lease times after voting, and most learn the decision before.
      expect(totals.askedDecisions).toBeGreaterThan(seeds / 10);
      expect(totals.resentDecisions).toBeGreaterThan(seeds);
      expect(totals.crashes).toBeGreaterThan(seeds / 2);
      expect(totals.redisLosses).toBeGreaterThan(seeds / 10);
      // G8: queue outages made rounds commit with queues outside their cut.
      expect(totals.queueOutages).toBeGreaterThan(seeds / 10);
      expect(totals.partial).toBeGreaterThan(seeds / 10);
      expect(totals.finishedCarrying).toBeGreaterThan(0);
      // Retention and GC ran the real prune and sweep against the store, and found work.
      expect(totals.prunedCheckpoints).toBeGreaterThan(seeds / 20);
      expect(totals.sweptSegments).toBeGreaterThan(seeds / 50);
      expect(totals.sweptStaged).toBeGreaterThan(seeds / 2);
    }, 180_000);

    it('keeps every invariant with strict rounds under queue outages, and never commits a queue outside the cut there', () => {
      let partial = 0;
      let outages = 0;
      for (let seed = 1; seed <= 200; seed += 1) {
        const options = { strictRounds: true, faults: { queueOutage: 0.1 } };
        const result = simulate(seed, options);
        expect(result.violation, describeFailure(result, options)).toBeUndefined();
        partial += result.stats.partial;
        outages += result.stats.queueOutages;
      }
      expect(outages).toBeGreaterThan(100);
      expect(partial).toBe(0);
    });

    it('replays a seed to the same trace, step for step', () => {
      for (const [seed, overrides] of [
        [4242, {}],
        [2, { variant: 'vote-before-durable' }],
      ] as Array<[number, OptionOverrides]>) {
        const first = simulate(seed, { ...overrides, fullTrace: true });
        const second = simulate(seed, { ...overrides, fullTrace: true });
        expect(first.trace!.length).toBeGreaterThan(100);
        expect(second.trace).toEqual(first.trace);
        expect(second.traceHash).toBe(first.traceHash);
        expect(second.violation).toEqual(first.violation);
      }
    });
  });

  describe('simulation: the checker catches broken protocols', () => {
    for (const variant of VARIANTS) {
      it(`catches "${variant}" as ${CAUGHT_BY[variant]} within ${VARIANT_SEEDS} seeds`, () => {
        let caught: SimResult | undefined;
        for (let seed = 1; seed <= VARIANT_SEEDS && !caught; seed += 1) {
          const result = simulate(seed, { variant });
          if (result.violation) caught = result;
        }
        expect(caught, `no violation in ${VARIANT_SEEDS} seeds`).toBeDefined();
        expect(caught!.violation!.invariant, describeFailure(caught!, { variant })).toBe(CAUGHT_BY[variant]);
      });
    }
  });
}
