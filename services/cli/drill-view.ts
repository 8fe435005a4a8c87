/**
 * Shows a restore drill: the restore into the scratch vhost as `restore` shows it, then one line
 * per reconciled queue and a summary; with --json one event per line (docs/CLI.md).
 */
import type { DrillDone, DrillEvent, DrillQueueResult, RestoreEvent } from '../gen/tidemark/v1/admin.js';
import { restoreEventJson } from './output.js';
import { renderRestore, type RestoreViewOutput } from './restore-view.js';

export interface DrillViewOptions {
  json: boolean;
  print: (line: string) => void;
  /** Where the restore part is drawn (bars on a terminal). @default process.stdout */
  out?: RestoreViewOutput;
}

export function drillEventJson(event: DrillEvent): unknown {
  const e = event.event;
  if (!e) return { type: 'unknown' };
  switch (e.$case) {
    case 'restore':
      return { type: 'restore', event: restoreEventJson(e.value) };
    case 'queue':
      return { type: 'queue', ...drillQueueJson(e.value) };
    case 'done':
      return {
        type: 'done',
        checkpoint: String(e.value.checkpoint),
        scratchVhost: e.value.scratchVhost,
        queues: e.value.queues,
        mismatches: e.value.mismatches,
        scratchRemoved: e.value.scratchRemoved,
        durationMs: e.value.durationMs,
        ok: e.value.ok,
      };
  }
}

function drillQueueJson(q: DrillQueueResult) {
  return {
    vhost: q.vhost,
    queue: q.queue,
    expectedMessages: q.expectedMessages,
    restoredMessages: q.restoredMessages,
    expectedSha256: q.expectedSha256,
    restoredSha256: q.restoredSha256,
    ok: q.ok,
    error: q.error || null,
  };
}

/** Consumes the events; returns the drill's result, or undefined if the stream ended without one. */
export async function renderDrill(events: AsyncIterable<DrillEvent>, options: DrillViewOptions): Promise<DrillDone | undefined> {
  let done: DrillDone | undefined;
  // The restore part is shown by the restore view, fed from this one stream.
  const restoreEvents: RestoreEvent[] = [];
  let wake: (() => void) | undefined;
  let restoreEnded = false;
  const restoreStream = (async function* () {
    for (;;) {
      while (restoreEvents.length > 0) yield restoreEvents.shift()!;
      if (restoreEnded) return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  })();
  const restoreView = options.json ? Promise.resolve(0) : renderRestore(restoreStream, { json: false, print: options.print, toJson: restoreEventJson, out: options.out });
  const endRestore = () => {
    restoreEnded = true;
    wake?.();
  };
  try {
    for await (const event of events) {
      const e = event.event;
      if (!e) continue;
      if (options.json) options.print(JSON.stringify(drillEventJson(event)));
      if (e.$case === 'restore') {
        restoreEvents.push(e.value);
        wake?.();
        continue;
      }
      endRestore();
      await restoreView;
      if (options.json) {
        if (e.$case === 'done') done = e.value;
        continue;
      }
      if (e.$case === 'queue') {
        const q = e.value;
        options.print(q.ok ? `ok ${q.vhost}:${q.queue}: ${q.restoredMessages} message(s), sha256 ${q.restoredSha256.slice(0, 16)}` : `MISMATCH ${q.vhost}:${q.queue}: ${q.error}`);
      } else if (e.$case === 'done') {
        done = e.value;
        const removed = done.scratchRemoved ? 'removed' : `NOT removed: delete it by hand (rabbitmqctl delete_vhost ${done.scratchVhost})`;
        options.print(
          `drill of checkpoint ${done.checkpoint}: ${done.queues - done.mismatches}/${done.queues} queue(s) reconciled` +
            `${done.mismatches ? `, ${done.mismatches} MISMATCH(ES)` : ''}; scratch vhost ${done.scratchVhost} ${removed}`,
        );
      }
    }
  } finally {
    endRestore();
    await restoreView.catch(() => 0);
  }
  return done;
}
