/** Failpoint specs parse strictly, stay inert unless armed, and fire once on the configured hit. */
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, FailpointError } from '../../services/core/errors.js';
import { FAILPOINTS, configureFailpoints, failpoint, parseFailpoints } from '../../services/core/infrastructure/failpoints.js';
import { loadConfig } from '../../services/core/infrastructure/config.js';

afterEach(() => {
  configureFailpoints('');
});

describe('parseFailpoints', () => {
  it('reads name=mode with an optional stall duration and hit number', () => {
    expect(parseFailpoints('worker.after-vote=crash, coordinator.after-decision=stall:20s@2,worker.mid-restore=fail@3')).toEqual([
      { name: 'worker.after-vote', mode: 'crash', hit: 1, stallMs: 30_000 },
      { name: 'coordinator.after-decision', mode: 'stall', hit: 2, stallMs: 20_000 },
      { name: 'worker.mid-restore', mode: 'fail', hit: 3, stallMs: 30_000 },
    ]);
    expect(parseFailpoints('')).toEqual([]);
  });

  it.each([
    ['worker.after-vot=crash', /unknown failpoint "worker.after-vot"; known: coordinator.before-fence/],
    ['worker.after-vote=explode', /is not name=crash\|fail\|stall/],
    ['worker.after-vote', /is not name=crash\|fail\|stall/],
    ['worker.after-vote=crash:5s', /only stall takes a duration/],
    ['worker.after-vote=stall:soon', /"soon" is not a duration/],
    ['worker.after-vote=fail@0', /@n counts from 1/],
  ])('refuses %s with a message naming the problem', (spec, message) => {
    expect(() => parseFailpoints(spec)).toThrow(ConfigError);
    expect(() => parseFailpoints(spec)).toThrow(message);
  });

  it('is validated with the rest of the configuration (TIDEMARK_FAILPOINTS)', () => {
    expect(loadConfig({ env: { TIDEMARK_FAILPOINTS: 'worker.after-commit=fail' } }).failpoints).toBe('worker.after-commit=fail');
    expect(() => loadConfig({ env: { TIDEMARK_FAILPOINTS: 'nowhere=fail' } })).toThrow(/failpoints \(TIDEMARK_FAILPOINTS\): unknown failpoint "nowhere"/);
  });
});

describe('failpoint', () => {
  it('does nothing at any point when none is armed', () => {
    for (const name of Object.keys(FAILPOINTS) as Array<keyof typeof FAILPOINTS>) expect(failpoint(name)).toBeUndefined();
  });

  it('fails on the configured hit only, and only once', () => {
    configureFailpoints('worker.after-segments=fail@2');
    expect(failpoint('worker.after-segments')).toBeUndefined();
    expect(() => failpoint('worker.after-segments')).toThrow(FailpointError);
    expect(failpoint('worker.after-segments')).toBeUndefined();
    // Other points stay inert.
    expect(failpoint('worker.after-vote')).toBeUndefined();
  });

  it('stalls for the configured time, then lets the step go on', async () => {
    configureFailpoints('coordinator.after-fence=stall:150ms');
    const started = Date.now();
    await failpoint('coordinator.after-fence');
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
  });

  it('names the point and how it was switched on in the error', () => {
    configureFailpoints('coordinator.after-vote=fail');
    expect(() => failpoint('coordinator.after-vote')).toThrow('failpoint coordinator.after-vote fired (mode fail): injected fault, configured by TIDEMARK_FAILPOINTS');
  });
});
