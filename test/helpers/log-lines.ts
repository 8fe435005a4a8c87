/**
 * Reading what services logged: JSON lines (services/core/infrastructure/log.ts), from a process's
 * stderr or from a test cluster's log file, where test/helpers/cluster.ts puts `[<process>] `
 * before each line.
 */
import { readFileSync } from 'node:fs';

/** One logged event: the logger's fields (level, time, component, msg, and the event's own). */
export type LogEntry = Record<string, unknown> & { level: string; msg: string; component: string };

/** A line of a cluster log: the process that wrote it and, when it is a log event, the event. */
export interface ClusterLogLine {
  process: string;
  line: string;
  entry?: LogEntry;
}

/** The event on a line, or undefined for a line that is not one (a crash trace, a library's print). */
export function parseLogLine(line: string): LogEntry | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const value = JSON.parse(line) as Record<string, unknown>;
    return typeof value.msg === 'string' && typeof value.level === 'string' ? (value as LogEntry) : undefined;
  } catch {
    return undefined;
  }
}

/** The events in one process's stderr. */
export function logEntries(text: string): LogEntry[] {
  return text.split('\n').flatMap((line) => parseLogLine(line) ?? []);
}

/** Every line of a test cluster's log file, with its process and event. */
export function readClusterLog(logFile: string): ClusterLogLine[] {
  return readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((raw) => {
      const match = /^\[([^\]]+)\] (.*)$/.exec(raw);
      const line = match ? match[2] : raw;
      return { process: match ? match[1] : '', line, entry: parseLogLine(line) };
    });
}

/** The events of a cluster log (of one process, if named) whose message is `msg`. */
export function clusterLogEvents(logFile: string, msg: string, processName?: string): LogEntry[] {
  return readClusterLog(logFile)
    .filter((l) => l.entry?.msg === msg && (processName === undefined || l.process === processName))
    .map((l) => l.entry!);
}
