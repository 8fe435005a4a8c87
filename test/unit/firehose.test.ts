import { describe, expect, it } from 'vitest';
import type { MessageProperties } from 'amqplib';
import type { BindingInfo } from '../../services/core/amqp/management-types.js';
import { reachingExchanges } from '../../services/coordinator/firehose-provisioning.js';
import {
  RELAY_CC_HEADER,
  RELAY_EXCHANGE_HEADER,
  RELAY_REDELIVERED_HEADER,
  RELAY_ROUTING_KEY_HEADER,
  RELAY_USER_ID_HEADER,
  firehoseVhostsOf,
  parseTrace,
  relayConsumerTag,
  relayPublishOf,
  relayView,
  relayWorkerOf,
  unwrapRelayed,
} from '../../services/core/amqp/firehose.js';

const NS = 'tm';

function trace(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    exchange_name: '',
    routing_keys: ['orders'],
    routed_queues: ['orders'],
    properties: { message_id: 'm1', delivery_mode: 2, timestamp: 1700000000, user_id: 'alice', headers: { a: 1 } },
    node: 'rabbit@host',
    ...overrides,
  };
}

describe('parseTrace', () => {
  it('reads the exchange, routing keys, routed queues and properties', () => {
    expect(parseTrace(trace())).toEqual({
      exchange: '',
      routingKeys: ['orders'],
      routedQueues: ['orders'],
      properties: { message_id: 'm1', delivery_mode: 2, timestamp: 1700000000, user_id: 'alice', headers: { a: 1 } },
    });
  });

  it('refuses a message that is not a publish trace', () => {
    expect(() => parseTrace({ routing_keys: ['x'] })).toThrow(/exchange_name/);
    expect(() => parseTrace(undefined)).toThrow(/not a publish trace/);
  });
});

describe('relayPublishOf', () => {
  it('sends a publish to the journal of its routed queue, carrying what the relay cannot keep in headers', () => {
    const publish = relayPublishOf(NS, '/', parseTrace(trace()), false)!;
    expect(publish.routingKey).toBe('tm.journal.orders');
    expect(publish.options).toEqual({
      messageId: 'm1',
      deliveryMode: 2,
      timestamp: 1700000000,
      headers: { a: 1, [RELAY_EXCHANGE_HEADER]: '', [RELAY_ROUTING_KEY_HEADER]: 'orders', [RELAY_USER_ID_HEADER]: 'alice' },
    });
  });

  it('reaches several journals in one publish (BCC), and moves CC out of the way', () => {
    const traced = parseTrace(trace({ exchange_name: 'fan', routed_queues: ['a', 'b', 'c'], properties: { headers: { CC: ['x'] } } }));
    const publish = relayPublishOf(NS, '/', traced, false)!;
    expect(publish.routingKey).toBe('tm.journal.a');
    expect(publish.options.headers).toMatchObject({ BCC: ['tm.journal.b', 'tm.journal.c'], [RELAY_CC_HEADER]: '["x"]' });
    expect(publish.options.headers).not.toHaveProperty('CC');
  });

  it('fans a fence out to every journal through the fence key', () => {
    const fence = parseTrace(trace({ exchange_name: 'tm.fence', routing_keys: [''], routed_queues: [], properties: { headers: { 'x-tidemark-fence': 4 } } }));
    const publish = relayPublishOf(NS, '/', fence, false)!;
    expect(publish.routingKey).toBe('tm.fence');
    expect(publish.options.headers).toMatchObject({ 'x-tidemark-fence': 4 });
  });

  it('relays nothing for unrouted publishes, own objects and the relay itself; marks re-sent copies', () => {
    expect(relayPublishOf(NS, '/', parseTrace(trace({ routed_queues: [] })), false)).toBeUndefined();
    expect(relayPublishOf(NS, '/', parseTrace(trace({ routed_queues: ['tm.journal.orders'] })), false)).toBeUndefined();
    expect(relayPublishOf(NS, '/', parseTrace(trace({ exchange_name: 'tm.relay', routed_queues: ['tm.journal.orders'] })), false)).toBeUndefined();
    expect(relayPublishOf(NS, '/', parseTrace(trace()), true)!.options.headers).toMatchObject({ [RELAY_REDELIVERED_HEADER]: true });
  });
});

describe('unwrapRelayed', () => {
  const props = (headers: Record<string, unknown> | undefined): MessageProperties => ({ headers, userId: undefined }) as unknown as MessageProperties;

  it('gives back the exchange, routing key, user-id and CC the producer used', () => {
    const publish = relayPublishOf(NS, '/', parseTrace(trace({ properties: { user_id: 'alice', headers: { a: 1, CC: ['x'] } } })), false)!;
    const out = unwrapRelayed({ exchange: 'tm.relay', routingKey: 'tm.journal.orders' }, props(publish.options.headers));
    expect(out.exchange).toBe('');
    expect(out.routingKey).toBe('orders');
    expect(out.properties.userId).toBe('alice');
    expect(out.properties.headers).toEqual({ a: 1, CC: ['x'] });
  });

  it('leaves a record that was not relayed as it is', () => {
    const p = props({ a: 1 });
    expect(unwrapRelayed({ exchange: 'ex', routingKey: 'k' }, p)).toEqual({ exchange: 'ex', routingKey: 'k', properties: p });
  });
});

describe('reachingExchanges', () => {
  const binding = (source: string, destination: string, destinationType: 'queue' | 'exchange' = 'queue'): BindingInfo => ({
    source,
    destination,
    destinationType,
    routingKey: '',
    arguments: {},
    propertiesKey: '~',
  });

  it('follows exchange-to-exchange bindings back from the queues, and ignores the default exchange', () => {
    const all = [
      binding('', 'q1'),
      binding('direct', 'q1'),
      binding('upstream', 'direct', 'exchange'),
      binding('top', 'upstream', 'exchange'),
      binding('other', 'q2'),
      binding('loop-a', 'loop-b', 'exchange'),
      binding('loop-b', 'loop-a', 'exchange'),
      binding('loop-a', 'q1'),
    ];
    expect(reachingExchanges(['q1'], all)).toEqual(['direct', 'loop-a', 'loop-b', 'top', 'upstream']);
  });
});

describe('firehose relay in status', () => {
  it('names the worker in its consumer tag, and nobody else', () => {
    expect(relayWorkerOf(relayConsumerTag('worker-7'))).toBe('worker-7');
    expect(relayWorkerOf(relayConsumerTag('host:a-123'))).toBe('host:a-123');
    expect(relayWorkerOf('amq.ctag-xyz')).toBeUndefined();
  });

  it('shows the active relay, the others standing by, and the backlog; ignores consumers that are not relays', () => {
    const consumers = [
      { tag: relayConsumerTag('w-2'), active: false },
      { tag: 'amq.ctag-someone', active: false },
      { tag: relayConsumerTag('w-1'), active: true },
      { tag: relayConsumerTag('w-0'), active: false },
    ];
    expect(relayView('v', { messages: 12, consumers })).toEqual({ vhost: 'v', activeWorker: 'w-1', standbyWorkers: ['w-0', 'w-2'], backlog: 12, error: '' });
    // Nobody active (between a failover and the broker's next statistics), and no depth reported.
    expect(relayView('v', { messages: undefined, consumers: [{ tag: relayConsumerTag('w-0'), active: false }] })).toEqual({ vhost: 'v', activeWorker: '', standbyWorkers: ['w-0'], backlog: 0, error: '' });
    expect(relayView('v', undefined).error).toMatch(/does not exist yet/);
  });

  it('reads the vhosts of the setting, blanks left out', () => {
    expect([...firehoseVhostsOf(' a, /,,b ')]).toEqual(['a', '/', 'b']);
    expect(firehoseVhostsOf('').size).toBe(0);
  });
});
