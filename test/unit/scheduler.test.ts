/** The leader's scheduler decides when discovery passes and scheduled rounds are due by the clock it is given. */
import { describe, expect, it } from 'vitest';
import { createLogger, type Clock } from '../../services/core/index.js';
import { LeaderScheduler, type LeaderDuties } from '../../services/coordinator/scheduler.js';

/** A clock the test moves by hand. */
function manualClock(startMs: number): Clock & { advance(ms: number): void } {
  let now = startMs;
  return {
    now: () => now,
    advance: (ms) => {
      now += ms;
    },
  };
}

function duties(): LeaderDuties & { passes: number; rounds: number } {
  const done = { passes: 0, rounds: 0 };
  return Object.assign(done, {
    stopped: () => false,
    isLeader: () => true,
    leaseLapsed: () => false,
    needsRecovery: () => false,
    redeliver: async () => {},
    recover: async () => {},
    discoverAndAssign: async () => {
      done.passes += 1;
    },
    startRound: async () => {
      done.rounds += 1;
    },
  });
}

describe('LeaderScheduler', () => {
  it('runs discovery and scheduled rounds when the injected clock says they are due, not by the wall clock', async () => {
    // Far from the wall clock: a scheduler that read Date.now() would find everything due at once.
    const clock = manualClock(1_000_000);
    const work = duties();
    const scheduler = new LeaderScheduler({ leaseTime: 10_000, discoveryInterval: 5_000, interval: 60_000 }, work, createLogger('test', 'error'), clock);
    scheduler.startRoundClock();

    await scheduler.tick();
    expect(work).toMatchObject({ passes: 1, rounds: 0 });

    clock.advance(4_999);
    await scheduler.tick();
    expect(work, 'the discovery interval has not passed').toMatchObject({ passes: 1, rounds: 0 });

    clock.advance(1);
    await scheduler.tick();
    expect(work).toMatchObject({ passes: 2, rounds: 0 });

    clock.advance(54_999);
    await scheduler.tick();
    expect(work, 'one ms before the first round is due').toMatchObject({ passes: 3, rounds: 0 });

    clock.advance(1);
    await scheduler.tick();
    expect(work).toMatchObject({ passes: 3, rounds: 1 });

    await scheduler.tick();
    expect(work, 'the next round is an interval later').toMatchObject({ passes: 3, rounds: 1 });
  });
});
