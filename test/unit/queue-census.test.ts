import { describe, expect, it } from 'vitest';
import type { QueueDefinition } from '../../services/gen/tidemark/v1/store.js';
import { toFieldTable } from '../../services/core/index.js';
import { CensusHistory, censusOf, fallbackOf, type QueueObservation, takeVhostCensus } from '../../services/coordinator/queue-census.js';

function definition(name: string, type = 'classic', args: Record<string, unknown> = {}): QueueDefinition {
  return { vhost: '/', name, type, durable: true, autoDelete: false, arguments: toFieldTable(args), bindings: [] };
}

function observation(extra: Partial<QueueObservation> = {}): QueueObservation {
  return {
    definition: definition('q'),
    declared: { ready: 100, consumers: 2 },
    consumers: [
      { tag: 'a', prefetch: 10, ackRequired: true },
      { tag: 'b', prefetch: 5, ackRequired: true },
    ],
    counters: { redeliver: 0, get: 0, publishRate: 0, policy: {} },
    ...extra,
  };
}

describe('the census of a queue', () => {
  it('bounds the unacknowledged messages by the acknowledging consumers\' prefetch', () => {
    const census = censusOf(observation(), undefined, 1_000, { maxHoldMs: 0 });
    expect(census).toMatchObject({ ready: 100, unackedBound: 15, margin: 2, markerAtMs: 1_000, fallback: '', requeued: false });
    const noAck = censusOf(observation({ consumers: [{ tag: 'a', prefetch: 0, ackRequired: false }], declared: { ready: 1, consumers: 1 } }), undefined, 0, { maxHoldMs: 0 });
    expect(noAck.unackedBound).toBe(0);
    expect(noAck.fallback).toBe('');
  });

  it('gives a quorum queue a margin for its publish rate', () => {
    const quorum = observation({ definition: definition('q', 'quorum'), counters: { redeliver: 0, get: 0, publishRate: 4_000, policy: {} } });
    expect(censusOf(quorum, undefined, 0, { maxHoldMs: 0 }).margin).toBe(200);
    expect(censusOf({ ...quorum, counters: { redeliver: 0, get: 0, publishRate: 0, policy: {} } }, undefined, 0, { maxHoldMs: 0 }).margin).toBe(10);
  });

  it('falls back where counts cannot locate the held messages', () => {
    const cases: Array<[Partial<QueueObservation>, RegExp]> = [
      [{ definition: definition('q', 'stream') }, /the stream was not read in the census/],
      [{ definition: definition('q', 'stream'), extent: new Error('NOT_FOUND') }, /the stream could not be read: NOT_FOUND/],
      [{ definition: definition('q', 'classic', { 'x-max-priority': 10 }) }, /x-max-priority/],
      [{ definition: definition('q', 'classic', { 'x-overflow': 'reject-publish' }) }, /reject-publish/],
      [{ counters: { redeliver: 0, get: 0, publishRate: 0, policy: { overflow: 'reject-publish-dlx' } } }, /reject-publish-dlx/],
      [{ declared: new Error('NOT_FOUND') }, /passive declare failed: NOT_FOUND/],
      [{ consumers: undefined, managementError: 'connection refused' }, /management API could not be asked: connection refused/],
      [{ consumers: [{ tag: 'a', prefetch: 0, ackRequired: true }, { tag: 'b', prefetch: 1, ackRequired: true }] }, /no prefetch limit/],
      [{ declared: { ready: 1, consumers: 3 } }, /consumers changed during the census \(2 by the management API, 3 by the broker\)/],
    ];
    for (const [extra, reason] of cases) expect(fallbackOf(observation(extra), undefined)).toMatch(reason);
    expect(fallbackOf(observation(), undefined)).toBe('');
    // basic.get with acknowledgement since the previous census.
    expect(fallbackOf(observation({ counters: { redeliver: 0, get: 3, publishRate: 0, policy: {} } }), { redeliver: 0, get: 1, publishRate: 0, policy: {} })).toMatch(/basic.get/);
  });

  it('counts what a stream source retained from its offsets, with no prefetch or hold bound', () => {
    const stream = observation({ definition: definition('s', 'stream'), declared: undefined, consumers: [], extent: { messages: 300, first: 200, last: 499 } });
    expect(fallbackOf(stream, undefined)).toBe('');
    expect(censusOf(stream, undefined, 7, { maxHoldMs: 60_000 })).toEqual({ ready: 300, unackedBound: 0, margin: 10, markerAtMs: 7, maxHoldMs: 0, fallback: '', requeued: false, stream: true });
    // A fast stream gets a margin for copies committing after the read; an unknown rate a generous one.
    expect(censusOf({ ...stream, counters: { redeliver: 9, get: 0, publishRate: 5_000, policy: {} } }, undefined, 0, { maxHoldMs: 0 }).margin).toBe(1_000);
    expect(censusOf({ ...stream, counters: undefined }, undefined, 0, { maxHoldMs: 0 }).margin).toBe(1_000);
    expect(censusOf({ ...stream, counters: { redeliver: 0, get: 0, publishRate: 100, policy: {} } }, undefined, 0, { maxHoldMs: 0 }).margin).toBe(20);
    expect(censusOf({ ...stream, extent: { messages: 0 } }, undefined, 0, { maxHoldMs: 0 }).ready).toBe(0);
  });

  it('sees a requeue as a rise of the redeliver counter since the previous census', () => {
    const before = { redeliver: 5, get: 0, publishRate: 0, policy: {} };
    expect(censusOf(observation({ counters: { ...before, redeliver: 6 } }), before, 0, { maxHoldMs: 0 }).requeued).toBe(true);
    expect(censusOf(observation({ counters: before }), before, 0, { maxHoldMs: 0 }).requeued).toBe(false);
    // The first census of a leader has nothing to compare with.
    expect(censusOf(observation({ counters: { ...before, redeliver: 60 } }), undefined, 0, { maxHoldMs: 0 }).requeued).toBe(false);
  });
});

describe('the census of a vhost', () => {
  const queues = new Map([
    ['/|a', definition('a')],
    ['/|b', definition('b')],
    ['/|s', definition('s', 'stream')],
  ]);

  it('publishes the marker before the declares and keeps each queue\'s counters for the next census', async () => {
    const order: string[] = [];
    const history = new CensusHistory();
    const parts = {
      consumersByQueue: async () => new Map([['a', [{ tag: 't', prefetch: 3, ackRequired: true }]]]),
      censusCounters: async () => new Map([['a', { redeliver: 1, get: 0, publishRate: 0, policy: {} }]]),
      publishMarker: async () => void order.push('marker'),
      declareQueues: async (names: string[]) => {
        order.push('declare');
        return new Map(names.map((n) => [n, { ready: 7, consumers: n === 'a' ? 1 : 0 }]));
      },
      streamExtents: async (names: string[]) => {
        order.push(`read ${names.join(',')}`);
        return new Map(names.map((n) => [n, { messages: 12, first: 3, last: 14 }]));
      },
      now: () => 42,
    };
    const census = await takeVhostCensus('/', queues, parts, history, { maxHoldMs: 1_000 });
    expect(order).toEqual(['marker', 'declare', 'read s']);
    expect(census.get('/|s')).toMatchObject({ ready: 12, unackedBound: 0, maxHoldMs: 0, fallback: '' });
    expect(census.get('/|a')).toMatchObject({ ready: 7, unackedBound: 3, markerAtMs: 42, maxHoldMs: 1_000, fallback: '' });
    expect(census.get('/|b')).toMatchObject({ ready: 7, unackedBound: 0, fallback: '' });
    expect(history.swap('/|a', undefined)).toEqual({ redeliver: 1, get: 0, publishRate: 0, policy: {} });
  });

  it('goes on without the management API: every queue falls back, the marker and declares still happen', async () => {
    const census = await takeVhostCensus(
      '/',
      queues,
      {
        consumersByQueue: async () => {
          throw new Error('503 Service Unavailable');
        },
        censusCounters: async () => new Map(),
        publishMarker: async () => {},
        declareQueues: async (names: string[]) => new Map(names.map((n) => [n, { ready: 1, consumers: 0 }])),
        streamExtents: async (names: string[]) => new Map(names.map((n) => [n, { messages: 4, first: 0, last: 3 }])),
        now: () => 0,
      },
      new CensusHistory(),
      { maxHoldMs: 0 },
    );
    expect(census.get('/|a')?.fallback).toMatch(/management API could not be asked: 503 Service Unavailable/);
    // A stream's count needs no management API; only its margin grows without a publish rate.
    expect(census.get('/|s')).toMatchObject({ ready: 4, fallback: '', margin: 1_000 });
  });
});
