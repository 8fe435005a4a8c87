/**
 * Following a restore across coordinator failures (TidemarkClient.followRestore): a broken stream
 * is reopened by the restore's id once the plan has named it, for a bounded time; anything else is
 * the caller's to see at once.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, TidemarkError, TransientError } from '../../services/core/index.js';
import { TidemarkClient } from '../../services/client/index.js';
import { followRestoreEvents } from '../../services/client/follow-restore.js';
import { RestoreDone, RestorePlan, type RestoreEvent } from '../../services/gen/tidemark/v1/admin.js';

const plan = (restoreId: string): RestoreEvent => ({ event: { $case: 'plan', value: RestorePlan.fromPartial({ restoreId, messages: 3 }) } });
const done = (restoreId: string): RestoreEvent => ({ event: { $case: 'done', value: RestoreDone.fromPartial({ restoreId, messages: 3, state: 'done' }) } });

/** A stream that yields `events`, then fails with `error` (or ends, without one). */
async function* stream(events: RestoreEvent[], error?: Error): AsyncGenerator<RestoreEvent> {
  for (const event of events) yield event;
  if (error) throw error;
}

async function collect(events: AsyncIterable<RestoreEvent>): Promise<string[]> {
  const seen: string[] = [];
  for await (const event of events) seen.push(`${event.event?.$case}:${(event.event?.value as { restoreId?: string }).restoreId ?? ''}`);
  return seen;
}

describe('followRestore', () => {
  it('reopens a stream lost after the plan by the restore id, and ends at done', async () => {
    const resumed: string[] = [];
    const reconnects: string[] = [];
    const events = followRestoreEvents(
      stream([plan('r-7')], new TransientError('connection reset')),
      (id) => {
        resumed.push(id);
        return stream([plan('r-7'), done('r-7'), plan('after-done')]);
      },
      { retryDelayMs: 1, onReconnect: (id, err) => reconnects.push(`${id}: ${(err as Error).message}`) },
    );
    expect(await collect(events)).toEqual(['plan:r-7', 'plan:r-7', 'done:r-7']);
    expect(resumed).toEqual(['r-7']);
    expect(reconnects).toEqual(['r-7: connection reset']);
  });

  it('throws an error before the plan at once: there is no restore to follow yet', async () => {
    let resumed = 0;
    const events = followRestoreEvents(stream([], new TransientError('cannot reach')), () => (resumed++, stream([])), { retryDelayMs: 1 });
    await expect(collect(events)).rejects.toThrow('cannot reach');
    expect(resumed).toBe(0);
  });

  it('does not reconnect after an error that retrying cannot fix', async () => {
    let resumed = 0;
    const events = followRestoreEvents(stream([plan('r-1')], new ConfigError('bad request')), () => (resumed++, stream([])), { retryDelayMs: 1 });
    await expect(collect(events)).rejects.toBeInstanceOf(ConfigError);
    expect(resumed).toBe(0);
  });

  it('gives up after reconnectForMs without an event, naming the restore to resume', async () => {
    let resumed = 0;
    const events = followRestoreEvents(
      stream([plan('r-9')], new TransientError('gone')),
      () => (resumed++, stream([], new TransientError('still gone'))),
      { reconnectForMs: 5, retryDelayMs: 25 },
    );
    const err = await collect(events).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TidemarkError);
    expect((err as Error).message).toBe('still gone; restore r-9 may still be running: follow it with "tidemark restore resume r-9"');
    expect(resumed).toBe(1);
  });

  it('on the client, a coordinator that cannot be reached fails the follow at once', async () => {
    const client = new TidemarkClient('127.0.0.1:1');
    try {
      const started = Date.now();
      await expect(collect(client.followRestore({ restoreId: 'r-1' }, { retryDelayMs: 1 }))).rejects.toThrow('cannot reach the coordinator at 127.0.0.1:1');
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      client.close();
    }
  });
});
