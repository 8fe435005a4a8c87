/**
 * Shows a restore's event stream: one JSON object per line with --json, otherwise a plan summary
 * and progress lines (redrawn in place on a terminal, one line per update otherwise).
 */
import type { RestoreEvent } from '../gen/tidemark/v1/admin.js';
import { bytes } from './output.js';

export interface RestoreViewOptions {
  json: boolean;
  print: (line: string) => void;
  toJson: (event: RestoreEvent) => unknown;
}

/** Consumes the events; returns the number of queues that failed. */
export async function renderRestore(events: AsyncIterable<RestoreEvent>, options: RestoreViewOptions): Promise<number> {
  let failed = 0;
  let total = 0;
  const confirmed = new Map<string, number>();
  const tty = process.stdout.isTTY === true && !options.json;
  const started = Date.now();
  let lastLine = 0;
  for await (const event of events) {
    if (options.json) options.print(JSON.stringify(options.toJson(event)));
    const e = event.event;
    if (!e) continue;
    if (e.$case === 'plan') {
      total = e.value.messages;
      if (options.json) continue;
      const p = e.value;
      options.print(`${p.dryRun ? 'plan (dry run)' : 'restoring'} checkpoint ${p.checkpoint}: ${p.queues.length} queue(s), ${p.messages} messages, ${bytes(p.bodyBytes)}`);
      for (const q of p.queues) {
        options.print(`  ${q.sourceVhost}:${q.sourceQueue} -> ${q.targetVhost}:${q.targetQueue} (${q.type}, ${q.messages} messages, ${q.segments} segment(s), worker ${q.workerId}${q.bind ? ', with bindings' : ''})`);
      }
    } else if (e.$case === 'progress') {
      const p = e.value;
      confirmed.set(`${p.sourceVhost}/${p.sourceQueue}`, p.confirmed);
      if (p.error) failed += 1;
      if (options.json) continue;
      if (p.done) {
        if (tty) process.stdout.write('\r\x1b[K');
        options.print(p.error ? `  FAILED ${p.error}` : `  done ${p.sourceVhost}:${p.sourceQueue} -> ${p.targetVhost}:${p.targetQueue}: ${p.confirmed}/${p.total}`);
      }
      const now = Date.now();
      if (tty && now - lastLine > 200) {
        lastLine = now;
        const sum = [...confirmed.values()].reduce((a, b) => a + b, 0);
        const rate = sum / Math.max(0.001, (now - started) / 1000);
        const eta = rate > 0 ? Math.ceil((total - sum) / rate) : 0;
        process.stdout.write(`\r\x1b[K  ${sum}/${total} messages, ${rate.toFixed(0)}/s, eta ${eta}s`);
      }
    } else if (e.$case === 'done') {
      if (options.json) continue;
      if (tty) process.stdout.write('\r\x1b[K');
      const d = e.value;
      options.print(`restore ${d.restoreId}: ${d.messages} messages into ${d.queues - d.failedQueues}/${d.queues} queue(s) in ${(d.durationMs / 1000).toFixed(1)}s${d.failedQueues ? `; ${d.failedQueues} FAILED` : ''}`);
    }
  }
  return failed;
}
