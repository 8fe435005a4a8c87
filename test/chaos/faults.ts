/**
 * The faults a chaos run injects and the seeded order it injects them in. Pure, so a seed always
 * gives the same schedule and the same victims.
 */

export type FaultKind =
  /** SIGKILL one worker, start it again after the hold. */
  | 'worker-kill'
  /** SIGKILL the leading coordinator (the standby takes over), start it again after the hold. */
  | 'leader-kill'
  /** Cut coordinator <-> worker-1: live connections reset, new ones refused. */
  | 'link-reset'
  /** Cut coordinator <-> worker-1: live connections frozen, new ones black-holed. */
  | 'link-blackhole'
  /** SIGKILL the S3 server (objects stay on disk), start it again after the hold. */
  | 's3-restart'
  /** SIGKILL the cluster's Redis (no persistence: every key is lost), start it again. */
  | 'redis-restart'
  /** rabbitmqctl stop_app, then start_app after the hold (the broker is shared). */
  | 'rabbitmq-restart'
  /**
   * Delete one protected queue's journal behind Tidemark's back (as an operator or a script
   * might). Nothing heals it but Tidemark: the leader declares the journal again and marks the
   * queue in its next checkpoint. Only on request (`--faults`): every message of the queue from
   * before is then a marked loss of the final checkpoint, which would drown the broker's own.
   */
  | 'journal-delete';

/** The faults of a run unless `--faults` says otherwise. */
export const ALL_FAULTS: readonly FaultKind[] = ['worker-kill', 'leader-kill', 'link-reset', 'link-blackhole', 's3-restart', 'redis-restart', 'rabbitmq-restart'];
/** Faults a run injects only when `--faults` names them. */
export const OPTIONAL_FAULTS: readonly FaultKind[] = ['journal-delete'];

export function isFaultKind(text: string): text is FaultKind {
  return ([...ALL_FAULTS, ...OPTIONAL_FAULTS] as readonly string[]).includes(text);
}

/** A small seeded PRNG (mulberry32): numbers in [0, 1). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/**
 * `passes` shuffles of `kinds` one after the other; a pass never starts with the fault the
 * previous one ended with, so the same fault never runs twice in a row.
 */
export function faultSchedule(kinds: readonly FaultKind[], passes: number, random: () => number): FaultKind[] {
  const schedule: FaultKind[] = [];
  for (let pass = 0; pass < passes; pass += 1) {
    let order = shuffled(kinds, random);
    if (order.length > 1 && order[0] === schedule[schedule.length - 1]) order = [...order.slice(1), order[0]];
    schedule.push(...order);
  }
  return schedule;
}
