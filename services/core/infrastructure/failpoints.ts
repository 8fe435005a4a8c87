/**
 * Failpoints: named places in the protocol where a test can make a process crash, fail or stall,
 * to prove that faults at every step abort or delay a checkpoint but never make one wrong.
 *
 * They are switched on only by configuration (TIDEMARK_FAILPOINTS, `failpoints` in a config
 * file), e.g. `coordinator.after-decision=crash,worker.after-vote=stall:20s@2`:
 *
 * - `crash`: the process kills itself with SIGKILL at that point (no cleanup, like a power cut);
 * - `fail`: the step at that point throws a FailpointError;
 * - `stall[:duration]`: the step waits (default 30s) and then goes on, past any deadline;
 * - `@n`: fire on the n-th time the point is reached (default the first); each fires once.
 *
 * With nothing configured, `failpoint()` is one map lookup on an empty map and returns
 * undefined: the points are inert in production.
 */
import { writeSync } from 'node:fs';
import { parseDuration } from '../format/duration.js';
import { ConfigError, FailpointError } from '../errors.js';

/** Every failpoint, with the step it sits at. */
export const FAILPOINTS = {
  'coordinator.before-fence': 'the leader has taken the epoch and is about to publish the fences',
  'coordinator.after-fence': 'the fences are confirmed; PREPARE has not been sent',
  'coordinator.after-vote': 'a vote has arrived (with @k: the k-th vote of the round)',
  'coordinator.after-decision': 'the decision is recorded in Redis; the manifest is not written',
  'coordinator.after-manifest': 'the manifest is written (the checkpoint is visible); COMMIT is not sent',
  'worker.queue-part': "one queue's part of a PREPARE is about to be prepared (with @k: the k-th on this worker); fail: that queue alone cannot take part",
  'worker.after-segments': 'every record before the fence is in segments; the partition is not staged, no vote sent',
  'worker.after-vote': 'the partition is staged and the vote is being returned',
  'worker.after-commit': 'COMMIT has arrived and is not yet applied',
  'worker.mid-restore': 'a restore task has published part of a queue',
  'gc.after-manifest-deletes': 'retention deleted the checkpoints it dropped; no segment or staged partition is swept yet',
  'gc.mid-sweep': 'garbage collection deleted the first unreferenced segment; the rest, and staged partitions, are not swept yet',
} as const;

export type FailpointName = keyof typeof FAILPOINTS;
export type FailpointMode = 'crash' | 'fail' | 'stall';

export interface FailpointSpec {
  name: FailpointName;
  mode: FailpointMode;
  /** Fire on this hit (1 = the first time the point is reached). */
  hit: number;
  stallMs: number;
}

const DEFAULT_STALL_MS = 30_000;

/** Parses `name=mode[:duration][@n],...`; throws a ConfigError naming what is wrong. */
export function parseFailpoints(text: string): FailpointSpec[] {
  const specs: FailpointSpec[] = [];
  for (const part of text.split(',').map((p) => p.trim()).filter((p) => p !== '')) {
    const match = /^([a-z.-]+)=(crash|fail|stall)(?::([^@]+))?(?:@(\d+))?$/.exec(part);
    if (!match) {
      throw new ConfigError(`failpoint "${part}" is not name=crash|fail|stall[:duration][@n], e.g. worker.after-vote=stall:20s@2`);
    }
    const [, name, mode, duration, hit] = match;
    if (!Object.hasOwn(FAILPOINTS, name)) {
      throw new ConfigError(`unknown failpoint "${name}"; known: ${Object.keys(FAILPOINTS).join(', ')}`);
    }
    if (duration !== undefined && mode !== 'stall') throw new ConfigError(`failpoint "${part}": only stall takes a duration`);
    let stallMs = DEFAULT_STALL_MS;
    if (duration !== undefined) {
      try {
        stallMs = parseDuration(duration);
      } catch (err) {
        throw new ConfigError(`failpoint "${part}": ${(err as Error).message}`, { cause: err });
      }
    }
    const n = hit === undefined ? 1 : Number(hit);
    if (n < 1) throw new ConfigError(`failpoint "${part}": @n counts from 1`);
    specs.push({ name: name as FailpointName, mode: mode as FailpointMode, hit: n, stallMs });
  }
  return specs;
}

interface Armed {
  spec: FailpointSpec;
  hits: number;
  fired: boolean;
}

const armed = new Map<string, Armed>();

/** Arms the failpoints of a spec string (replacing any armed before); '' disarms all. */
export function configureFailpoints(text: string): FailpointSpec[] {
  const specs = parseFailpoints(text);
  armed.clear();
  for (const spec of specs) armed.set(spec.name, { spec, hits: 0, fired: false });
  if (specs.length > 0) {
    report('failpoints armed', { failpoints: specs.map((s) => `${s.name}=${s.mode}@${s.hit}`) });
  }
  return specs;
}

/**
 * Marks the place `name`: nothing happens unless it is armed and this is the hit it fires on.
 * Await the result where the step is async (a stall returns a promise; fail throws). With
 * `crashAfterMs`, a crash lets the step finish and kills the process that long after.
 */
export function failpoint(name: FailpointName, options: { crashAfterMs?: number } = {}): Promise<void> | undefined {
  if (armed.size === 0) return undefined;
  const point = armed.get(name);
  if (!point || point.fired) return undefined;
  point.hits += 1;
  if (point.hits < point.spec.hit) return undefined;
  point.fired = true;
  report('failpoint fired', { failpoint: name, mode: point.spec.mode });
  switch (point.spec.mode) {
    case 'crash':
      if (options.crashAfterMs !== undefined) {
        // The step goes on (e.g. a reply is sent) and the process dies just after it.
        setTimeout(() => process.kill(process.pid, 'SIGKILL'), options.crashAfterMs);
        return undefined;
      }
      process.kill(process.pid, 'SIGKILL');
      // SIGKILL is not delivered synchronously everywhere; never run the step after a crash point.
      return new Promise<void>(() => {});
    case 'fail':
      throw new FailpointError(name);
    case 'stall':
      // Unref'd: a stalled step must not keep a stopping process alive.
      return new Promise<void>((resolve) => setTimeout(resolve, point.spec.stallMs).unref());
  }
}

/** Stderr, written synchronously: a crash point must leave its line in the log before dying. */
function report(msg: string, fields: Record<string, unknown>): void {
  // A JSON line like the logger's (log.ts), though no logger reaches this far down.
  const line = { level: 'warn', time: new Date().toISOString(), pid: process.pid, component: 'failpoints', ...fields, msg };
  try {
    writeSync(2, `${JSON.stringify(line)}\n`);
  } catch {
    // stderr is closed: nothing to tell.
  }
}
