/**
 * What a chaos run reports: per fault, how long recovery took; the checker's verdict; what the
 * cluster log says about aborted rounds and errors; and the one-line summary it ends with.
 */
import { readClusterLog as readLogLines } from '../helpers/log-lines.js';
import type { FaultKind } from './faults.js';
import { COUNTERS, MARKED_COUNTERS, type Verdict } from './history.js';

export interface FaultRecord {
  kind: FaultKind;
  /** What was hit: a process name, the link, a server. */
  target: string;
  startedAtMs: number;
  healedAtMs: number;
  /** Seconds from the heal to the commit of the first round that began after it. */
  recoverS?: number;
  /** That round's epoch. */
  epoch?: number;
}

export interface ChaosReport {
  verdict: Verdict;
  /** Visible checkpoints at the end. */
  committed: number;
  /** "round N aborted" lines in the cluster log. */
  aborted: number;
  /** The longest recovery, in seconds. */
  recoverS: number;
  faults: FaultRecord[];
  /** Why the run fails besides the counters: a fault without a commit, a failed restore, a crash. */
  problems: string[];
  /** Odd things that do not fail the run by themselves, e.g. a restore that needed a retry. */
  notes: string[];
  /** Abort reasons (numbers blanked) and how often each occurred. */
  abortReasons: Array<[string, number]>;
  /** ERROR lines and ioredis complaints of the cluster log (numbers blanked), with counts. */
  errorLines: Array<[string, number]>;
  logFile: string;
}

/**
 * The run's last line: `lost=N duplicated=N unexpected=N reordered=N causal=N lostMarked=N
 * causalMarked=N journalMissing=N committed=N aborted=N recover_s=X`. The first five are silent
 * and fail the run; the marked ones were owned up to by a checkpoint (history.ts).
 */
export function summaryLine(report: ChaosReport): string {
  const counts = [...COUNTERS, ...MARKED_COUNTERS].map((c) => `${c}=${report.verdict[c]}`).join(' ');
  return `${counts} journalMissing=${report.verdict.journalMissing ?? '?'} committed=${report.committed} aborted=${report.aborted} recover_s=${report.recoverS.toFixed(1)}`;
}

/** True when no counter moved, every fault was followed by a committed round, and nothing else went wrong. */
export function passed(report: ChaosReport): boolean {
  return COUNTERS.every((c) => report.verdict[c] === 0) && report.problems.length === 0 && report.faults.every((f) => f.recoverS !== undefined);
}

/** Groups similar log lines: long hex ids and numbers blanked. */
function normalize(line: string): string {
  return line
    .replace(/[0-9a-f]{8,}/g, '#')
    .replace(/\d+/g, 'N')
    .slice(0, 240);
}

function tally(lines: string[]): Array<[string, number]> {
  const counts = new Map<string, number>();
  for (const line of lines) counts.set(line, (counts.get(line) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1]);
}

/** Aborted rounds and error lines in a cluster log (JSON lines, as written by test/helpers/cluster.ts). */
export function readClusterLog(logFile: string): Pick<ChaosReport, 'aborted' | 'abortReasons' | 'errorLines'> {
  const lines = readLogLines(logFile);
  const aborts = lines.flatMap((l) => (l.entry?.msg === 'round aborted' ? [String(l.entry.reason ?? '')] : []));
  const errors = lines
    .filter((l) => l.entry?.level === 'error' || (!l.entry && /Unhandled error event/.test(l.line)))
    .map((l) => {
      const who = l.process.replace(/^(coordinator|worker).*$/, '$1');
      if (!l.entry) return normalize(`[${who}] ${l.line}`);
      const { msg, err, reason, vhost, queue } = l.entry;
      const facts = [vhost !== undefined && queue !== undefined ? `${vhost}/${queue}` : '', err ?? reason ?? ''].filter(Boolean).join(': ');
      return normalize(`[${who}] ${msg}${facts ? ` (${facts})` : ''}`);
    });
  return { aborted: aborts.length, abortReasons: tally(aborts.map(normalize)), errorLines: tally(errors) };
}
