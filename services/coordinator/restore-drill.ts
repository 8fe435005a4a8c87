/**
 * `tidemark restore-drill`: proves a checkpoint restores, without touching the real queues. Each
 * source vhost of the selected queues gets a scratch vhost; the checkpoint is restored into them
 * as an ordinary restore (so a drill exercises exactly what an operator would run), every
 * restored queue is read back and reconciled with the checkpoint data (drill.ts), and the scratch
 * vhosts are removed whatever happened.
 */
import type { DrillEvent, DrillQueueResult, DrillRequest, RestoreEvent } from '../gen/tidemark/v1/admin.js';
import { RestoreRequest } from '../gen/tidemark/v1/admin.js';
import { errorMessage, queueKey } from '../core/index.js';
import type { Coordinator } from './coordinator.js';
import { createScratchVhost, expectedDigest, reconcile, removeScratchVhost, restoredDigest, scratchVhostName } from './drill.js';
import { planRestore } from './restore-plan.js';
import type { RestoreService } from './restore-coordinator.js';

export async function runDrill(coordinator: Coordinator, restores: RestoreService, request: DrillRequest, emit: (event: DrillEvent) => void, signal: AbortSignal): Promise<void> {
  const startedAt = Date.now();
  const { config, management, store } = coordinator.restoreParts;
  const log = restores.log;
  // Refused by a standby before a scratch vhost is made.
  restores.requireLeader('the restore drill');
  const manifest = await coordinator.catalog.resolve(request.checkpoint);
  // Which queues, hence which source vhosts (queue names may repeat across vhosts).
  const selected = planRestore(manifest, { queues: request.queues, prefix: '', map: [], targetVhost: '', bindings: 'none', history: request.history }, ['-']);
  const scratch = new Map([...new Set(selected.map((p) => p.entry.definition!.vhost))].map((vhost) => [vhost, scratchVhostName(manifest.epoch)]));
  const user = decodeURIComponent(new URL(config.amqpUrl).username) || 'guest';
  const created: string[] = [];
  const results: DrillQueueResult[] = [];
  const restoreErrors = new Map<string, string>();
  let restoreId = '';
  try {
    for (const name of scratch.values()) {
      await createScratchVhost(management, name, user);
      created.push(name);
    }
    const relay = (event: RestoreEvent) => {
      const e = event.event;
      if (e?.$case === 'plan') restoreId = e.value.restoreId;
      if (e?.$case === 'progress' && e.value.error) restoreErrors.set(queueKey(e.value.sourceVhost, e.value.sourceQueue), e.value.error);
      emit({ event: { $case: 'restore', value: event } });
    };
    await restores.start(
      RestoreRequest.fromPartial({
        checkpoint: String(manifest.epoch),
        queues: request.queues,
        vhostMap: [...scratch].map(([from, to]) => ({ from, to })),
        mode: 'refuse',
        bindings: 'none',
        concurrency: request.concurrency,
        history: request.history,
      }),
      relay,
      signal,
    );
    if (signal.aborted) {
      // The drill's client left: its restore must not go on into vhosts about to be removed.
      if (restoreId) await restores.cancel(restoreId).catch(() => {});
      return;
    }
    for (const planned of selected) {
      const source = planned.entry.definition!;
      const vhost = scratch.get(source.vhost)!;
      const spec = {
        vhost: source.vhost,
        queue: source.name,
        startOffset: planned.span.startOffset,
        cutOffset: planned.entry.cutOffset,
        segments: await coordinator.catalog.segmentsOf(planned.entry, planned.span.startOffset),
      };
      // Damaged checkpoint data fails this queue's reconciliation, not the drill.
      const expected = await expectedDigest(store, spec, signal).catch((err: unknown) => {
        if (signal.aborted) throw err;
        return { messages: planned.span.messages, sha256: '', error: `reading the checkpoint data: ${errorMessage(err)}` };
      });
      const restored = await restoredDigest(config.amqpUrl, vhost, source.name, { type: source.type, expectedMessages: expected.messages, signal });
      const result = reconcile(source.vhost, source.name, expected, restored);
      if ('error' in expected) Object.assign(result, { ok: false, error: [expected.error, result.error].filter(Boolean).join('; ') });
      const restoreError = restoreErrors.get(queueKey(source.vhost, source.name));
      if (restoreError) Object.assign(result, { ok: false, error: [restoreError, result.error].filter(Boolean).join('; ') });
      results.push(result);
      emit({ event: { $case: 'queue', value: result } });
    }
  } finally {
    let removed = true;
    for (const name of created) {
      if (!(await removeScratchVhost(management, name))) {
        removed = false;
        log.warn('restore drill: a scratch vhost could not be removed; delete it by hand (rabbitmqctl delete_vhost)', { vhost: name });
      }
    }
    if (!signal.aborted) {
      const mismatches = results.filter((r) => !r.ok).length + (selected.length - results.length);
      emit({
        event: {
          $case: 'done',
          value: {
            checkpoint: manifest.epoch,
            scratchVhost: [...scratch.values()].join(','),
            queues: selected.length,
            mismatches,
            scratchRemoved: removed,
            durationMs: Date.now() - startedAt,
            ok: mismatches === 0 && results.length === selected.length,
          },
        },
      });
    }
  }
}
