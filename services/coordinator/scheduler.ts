/**
 * The leader's timer and its work queue: on each tick it re-sends undelivered decisions, recovers
 * a round that ended in doubt, runs a discovery pass every `discoveryInterval` and a scheduled
 * round every `interval`. What each duty does is the coordinator's; this holds when and in what
 * order.
 *
 * - discovery passes, recovery and rounds run one at a time (enqueue), so a round sees one
 *   consistent assignment and recovery never runs beside a round;
 * - a tick that is still busy makes the next ticks skip rather than queue passes and rounds that
 *   would run back to back later; recovery and discovery have a time limit (STEP_LIMIT_MS), a
 *   round ends by its own deadlines;
 * - a leader that has stopped working says so: a tick busy for longer than a few discovery
 *   intervals, and a lease that lapsed unrenewed, are logged (throttled).
 */
import { type Clock, errorMessage, type Logger, systemClock, throttledWarn, withTimeLimit } from '../core/index.js';

/**
 * The longest one step of the leader's background work (recovery, a discovery pass, becoming
 * leader) may take before it is given up and retried: a hung call must not stop the leader for good.
 */
export const STEP_LIMIT_MS = 120_000;

/** What the scheduler runs and asks; the coordinator provides each. */
export interface LeaderDuties {
  stopped(): boolean;
  /** Leading, and the lease is certainly still ours. */
  isLeader(): boolean;
  /** Leading by our own account, but the lease was not renewed within a lease time. */
  leaseLapsed(): boolean;
  /** A round ended in doubt: recovery runs before the next round. */
  needsRecovery(): boolean;
  redeliver(): Promise<void>;
  recover(): Promise<void>;
  discoverAndAssign(): Promise<void>;
  startRound(): Promise<unknown>;
}

export interface SchedulerTimings {
  leaseTime: number;
  discoveryInterval: number;
  /** Between scheduled rounds; 0: rounds only on demand. */
  interval: number;
}

export class LeaderScheduler {
  /** The work queued so far; each runs after the one before. */
  private serial: Promise<unknown> = Promise.resolve();
  private lastDiscovery = 0;
  private nextRoundAt = 0;
  /** The step the timer is in, and since when (for the stall warning). */
  private working: { step: string; sinceMs: number } | undefined;
  private readonly stallWarn: ReturnType<typeof throttledWarn>;

  constructor(
    private readonly timings: SchedulerTimings,
    private readonly duties: LeaderDuties,
    private readonly log: Logger,
    /** When discovery passes and scheduled rounds are due. */
    private readonly clock: Clock = systemClock,
  ) {
    this.stallWarn = throttledWarn(log, 30_000);
  }

  /** A new leader's first scheduled round comes one interval after it began leading. */
  startRoundClock(): void {
    this.nextRoundAt = this.clock.now() + this.timings.interval;
  }

  /** Runs `work` after the work queued before it; `limitMs` gives it up (see withTimeLimit). */
  enqueue<T>(work: () => Promise<T>, limitMs?: number, what = 'leader work'): Promise<T> {
    const run = this.serial.then(() => (limitMs === undefined ? work() : withTimeLimit(work(), limitMs, what)));
    this.serial = run.catch(() => {});
    return run;
  }

  /** Settles when the work queued so far has ended, however it ended. */
  idle(): Promise<void> {
    return this.serial.then(
      () => {},
      () => {},
    );
  }

  /** One tick of the leader's timer (see the header). */
  async tick(): Promise<void> {
    const { timings, duties, log, clock } = this;
    if (duties.stopped()) return;
    if (duties.leaseLapsed()) {
      this.stallWarn('leader lease not renewed in time: not leading until a renewal succeeds', { leaseTimeMs: timings.leaseTime });
      return;
    }
    if (!duties.isLeader()) return;
    if (this.working) {
      const busyMs = clock.now() - this.working.sinceMs;
      if (busyMs > Math.max(10_000, 3 * timings.discoveryInterval)) {
        this.stallWarn('leader busy in one step; discovery and scheduled rounds wait', { step: this.working.step, durationMs: busyMs });
      }
      return;
    }
    const step = async (name: string, work: () => Promise<unknown>) => {
      this.working = { step: name, sinceMs: clock.now() };
      await work().catch((err) => log.warn('leader step failed; will retry', { step: name, err: errorMessage(err) }));
    };
    try {
      void duties.redeliver().catch((err) => log.warn('re-sending decisions failed', { err: errorMessage(err) }));
      if (duties.needsRecovery()) {
        await step('recovery of an in-doubt round', () => this.enqueue(() => duties.recover(), STEP_LIMIT_MS, 'recovery'));
      }
      if (clock.now() - this.lastDiscovery >= timings.discoveryInterval) {
        this.lastDiscovery = clock.now();
        await step('discovery pass', () => this.enqueue(() => duties.discoverAndAssign(), STEP_LIMIT_MS, 'discovery pass'));
      }
      if (timings.interval > 0 && clock.now() >= this.nextRoundAt) {
        this.nextRoundAt = clock.now() + timings.interval;
        await step('scheduled round', () => duties.startRound());
      }
    } finally {
      this.working = undefined;
    }
  }
}
