/**
 * The links between simulated processes: gRPC between coordinator and workers (network), and the
 * calls every process makes to Redis, the store and the broker (services).
 *
 * While faults are on, a message can be lost, delivered twice, or held back long enough to
 * arrive after its deadline and after messages sent later (reordering). A message to a process
 * that is down when it arrives is dropped, and a gRPC call to it is refused. A Redis or store
 * call runs at the service first and answers the caller later, so a write a process sent just
 * before it crashed or paused still lands; the caller may also see an error for a write that ran
 * (a lost reply).
 */
import type { Random } from './random.js';
import type { Scheduler, Task } from './scheduler.js';
import type { FaultRates } from './options.js';

export interface Process {
  readonly id: string;
  /** Bumped on every restart: work scheduled by an earlier life is dropped. */
  incarnation: number;
  up: boolean;
}

export class Network {
  /** False in the calm phase: no loss, duplicates, long delays or service errors. */
  faulty = true;

  constructor(
    private readonly scheduler: Scheduler,
    private readonly random: Random,
    private readonly faults: FaultRates,
  ) {}

  /**
   * Sends a message; `deliver` runs at `to` for each copy that arrives while `to` is up, and
   * `refused` (if given) for each copy that arrives while it is down: a connection refused, which
   * the caller sees at once as UNAVAILABLE.
   */
  send(from: Process, to: Process, label: string, deliver: () => void, refused?: () => void): void {
    if (this.faulty && this.random.chance(this.faults.loss)) {
      this.scheduler.log(`lost ${from.id}->${to.id} ${label}`);
      return;
    }
    const copies = this.faulty && this.random.chance(this.faults.duplicate) ? 2 : 1;
    for (let i = 0; i < copies; i += 1) {
      const delay = this.faulty && this.random.chance(this.faults.longDelay) ? this.random.int(200, 3_000) : this.random.int(1, 30);
      this.scheduler.at(delay, to.id, `${from.id}->${to.id} ${label}${i > 0 ? ' (dup)' : ''}`, () => {
        if (to.up) deliver();
        else refused?.();
      });
    }
  }

  /**
   * A read from a service: it has no effect there, so it runs when its answer arrives (one step).
   * `failRate` is the chance it fails.
   */
  read<T>(caller: Process, label: string, failRate: number, op: () => T, reply: (result: { ok: true; value: T } | { ok: false; error: string }) => void): void {
    const life = caller.incarnation;
    const fails = this.faulty && this.random.chance(failRate);
    this.scheduler.at(this.random.int(2, 16), caller.id, `${caller.id} ${label}`, () => {
      if (!caller.up || caller.incarnation !== life) return;
      reply(fails ? { ok: false, error: `${label} failed` } : { ok: true, value: op() });
    });
  }

  /**
   * A write to a service. `op` runs at the service (unless the call fails first) and returns a
   * value; `reply` runs back at the caller, in the same life, with the value or an error, so a
   * write sent just before a crash or pause still lands. `failRate` is the chance the call fails
   * before running, `replyLossRate` the chance it runs and the caller still sees an error.
   */
  call<T>(
    caller: Process,
    label: string,
    failRate: number,
    replyLossRate: number,
    op: () => T,
    reply: (result: { ok: true; value: T } | { ok: false; error: string }) => void,
  ): void {
    const life = caller.incarnation;
    const fails = this.faulty && this.random.chance(failRate);
    const replyLost = !fails && this.faulty && this.random.chance(replyLossRate);
    const there = this.random.int(1, 8);
    const back = this.random.int(1, 8);
    this.scheduler.at(there, 'services', `${caller.id} ${label}`, () => {
      const value = fails ? undefined : op();
      this.scheduler.at(back, caller.id, `${caller.id} ${label} reply`, () => {
        if (!caller.up || caller.incarnation !== life) return;
        if (fails) reply({ ok: false, error: `${label} failed` });
        else if (replyLost) reply({ ok: false, error: `${label}: reply lost` });
        else reply({ ok: true, value: value as T });
      });
    });
  }

  /** A timer of `owner`'s current life; the returned task can be cancelled. */
  timer(owner: Process, delay: number, label: string, run: () => void): Task {
    const life = owner.incarnation;
    return this.scheduler.at(delay, owner.id, label, () => {
      if (owner.up && owner.incarnation === life) run();
    });
  }
}
