/**
 * Whether a service can do its work now: each dependency (Redis, the broker, the store) is probed
 * on its own timer, and the service is ready while every probe's last answer was a success. The
 * health service (grpc/health.ts) and the logs follow it (docs/OPERATIONS.md#health).
 *
 * - not ready until every probe has answered once: a process that has not reached Redis yet must
 *   not be sent traffic;
 * - a probe that neither answers nor fails within `timeoutMs` counts as failed (a half-open
 *   socket looks like this), and a probe still in flight is not started again;
 * - listeners hear only changes, with the reasons of what is failing.
 */
import { errorMessage } from '../errors.js';
import type { Logger } from './log.js';
import { withTimeLimit } from './time-limit.js';

export interface ReadinessCheck {
  /** What is probed, as reasons name it: `redis`, `broker`, `store`. */
  name: string;
  /** Resolves when the dependency answered; rejects when it did not. */
  probe(): Promise<void>;
  /** Time between probes. @default 1000 */
  everyMs?: number;
}

export interface ReadinessOptions {
  /** A probe that takes longer has failed. @default 2000 */
  timeoutMs?: number;
  /** Told when a dependency fails or comes back. @default silent */
  log?: Logger;
}

/** What the listeners hear: ready or not, and why not. */
export interface ReadinessState {
  ready: boolean;
  /** `<check>: <why>` for each failing or not yet answered check; empty when ready. */
  problems: string[];
}

type Outcome = { ok: true } | { ok: false; reason: string };

export class Readiness {
  private readonly outcomes = new Map<string, Outcome>();
  private readonly running = new Set<string>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly listeners: Array<(state: ReadinessState) => void> = [];
  private readonly timeoutMs: number;
  private last: ReadinessState;
  private stopped = false;

  constructor(
    private readonly checks: readonly ReadinessCheck[],
    private readonly options: ReadinessOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 2_000;
    for (const check of checks) this.outcomes.set(check.name, { ok: false, reason: 'not checked yet' });
    this.last = this.state();
  }

  /** Probes every dependency now, then each on its own timer. */
  start(): void {
    for (const check of this.checks) {
      void this.run(check);
      const timer = setInterval(() => void this.run(check), check.everyMs ?? 1_000);
      timer.unref();
      this.timers.push(timer);
    }
  }

  /** Probes every dependency once and waits for the answers (tests, and a start that wants the first answer). */
  async checkNow(): Promise<ReadinessState> {
    await Promise.all(this.checks.map((check) => this.run(check)));
    return this.state();
  }

  stop(): void {
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
  }

  get ready(): boolean {
    return this.last.ready;
  }

  state(): ReadinessState {
    const problems = [...this.outcomes].flatMap(([name, outcome]) => (outcome.ok ? [] : [`${name}: ${outcome.reason}`]));
    return { ready: problems.length === 0, problems };
  }

  /** Calls `listener` on every change of readiness or of its reasons. */
  onChange(listener: (state: ReadinessState) => void): void {
    this.listeners.push(listener);
  }

  private async run(check: ReadinessCheck): Promise<void> {
    if (this.running.has(check.name) || this.stopped) return;
    this.running.add(check.name);
    let outcome: Outcome;
    try {
      await withTimeLimit(check.probe(), this.timeoutMs, `the ${check.name} check`);
      outcome = { ok: true };
    } catch (err) {
      outcome = { ok: false, reason: errorMessage(err) };
    } finally {
      this.running.delete(check.name);
    }
    if (this.stopped) return;
    const before = this.outcomes.get(check.name);
    this.outcomes.set(check.name, outcome);
    if (before?.ok !== outcome.ok) {
      if (outcome.ok) this.options.log?.info('dependency answers again', { check: check.name });
      else this.options.log?.warn('dependency does not answer: not ready', { check: check.name, reason: outcome.reason });
    }
    this.publish();
  }

  private publish(): void {
    const next = this.state();
    if (next.ready === this.last.ready && next.problems.join('\n') === this.last.problems.join('\n')) return;
    this.last = next;
    for (const listener of this.listeners) listener(next);
  }
}
