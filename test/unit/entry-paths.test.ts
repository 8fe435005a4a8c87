import { describe, expect, it } from 'vitest';
import type { BindingInfo, ExchangeInfo, QueueInfo } from '../../services/core/amqp/management-types.js';
import { topicMatches, uncapturablePaths, type VhostTopology } from '../../services/coordinator/entry-paths.js';

const queue = (name: string, args: Record<string, unknown> = {}, extra: Partial<QueueInfo> = {}): QueueInfo => ({
  name,
  vhost: 'v',
  type: 'classic',
  durable: true,
  autoDelete: false,
  exclusive: false,
  arguments: args,
  ...extra,
});
const exchange = (name: string, type: string, args: Record<string, unknown> = {}): ExchangeInfo => ({
  name,
  vhost: 'v',
  type,
  durable: true,
  autoDelete: false,
  internal: false,
  arguments: args,
});
const bind = (source: string, destination: string, routingKey = '', destinationType: 'queue' | 'exchange' = 'queue'): BindingInfo => ({
  source,
  destination,
  destinationType,
  routingKey,
  arguments: {},
  propertiesKey: routingKey,
});

function paths(topology: Partial<VhostTopology>, protectedNames = ['p']): Record<string, string[]> {
  const full: VhostTopology = { queues: [], bindings: [], exchanges: [], policies: new Map(), ...topology };
  return Object.fromEntries(uncapturablePaths(protectedNames, full));
}

describe('entry paths a journal cannot see', () => {
  it('reports a protected queue fed by a dead-letter exchange from a queue argument, with the routing key honoured', () => {
    const topology = {
      queues: [queue('p'), queue('other'), queue('src', { 'x-dead-letter-exchange': 'dlx', 'x-dead-letter-routing-key': 'to-p' })],
      exchanges: [exchange('dlx', 'direct')],
      bindings: [bind('dlx', 'p', 'to-p'), bind('dlx', 'other', 'to-other')],
    };
    expect(paths(topology, ['p', 'other'])).toEqual({ p: ['fed by dead-lettering from src'] });
  });

  it('reports dead-lettering set by a policy, and lets the queue argument win over it', () => {
    const policies = new Map([['dl', { 'dead-letter-exchange': 'dlx' }]]);
    const exchanges = [exchange('dlx', 'fanout'), exchange('elsewhere', 'fanout')];
    const bindings = [bind('dlx', 'p')];
    expect(paths({ queues: [queue('p'), queue('src', {}, { policy: 'dl' })], exchanges, bindings, policies })).toEqual({ p: ['fed by dead-lettering from src'] });
    const overridden = queue('src', { 'x-dead-letter-exchange': 'elsewhere' }, { policy: 'dl' });
    expect(paths({ queues: [queue('p'), overridden], exchanges, bindings, policies })).toEqual({});
  });

  it('follows the default exchange, exchange-to-exchange bindings and alternate exchanges', () => {
    // The default exchange routes by queue name.
    expect(paths({ queues: [queue('p'), queue('src', { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'p' })] })).toEqual({
      p: ['fed by dead-lettering from src'],
    });
    expect(paths({ queues: [queue('p'), queue('src', { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'q' })] })).toEqual({});
    const dlq = (key: string) => queue('src', { 'x-dead-letter-exchange': 'dlx', 'x-dead-letter-routing-key': key });
    const chained = {
      exchanges: [exchange('dlx', 'topic', { 'alternate-exchange': 'ae' }), exchange('inner', 'direct'), exchange('ae', 'fanout')],
      bindings: [bind('dlx', 'inner', 'orders.#', 'exchange'), bind('inner', 'p', 'orders.eu'), bind('ae', 'p2')],
    };
    expect(paths({ ...chained, queues: [queue('p'), queue('p2'), dlq('orders.eu')] }, ['p', 'p2'])).toEqual({ p: ['fed by dead-lettering from src'] });
    // Routed nowhere by dlx: its alternate exchange takes it.
    expect(paths({ ...chained, queues: [queue('p'), queue('p2'), dlq('audit')] }, ['p', 'p2'])).toEqual({ p2: ['fed by dead-lettering from src'] });
  });

  it('without a dead-letter routing key, uses the keys messages entered the source with, and any key when those are not known', () => {
    const exchanges = [exchange('in', 'direct'), exchange('dlx', 'direct'), exchange('fan', 'fanout')];
    const base = { exchanges, bindings: [bind('in', 'src', 'a'), bind('dlx', 'p', 'a'), bind('dlx', 'x', 'b')] };
    const src = queue('src', { 'x-dead-letter-exchange': 'dlx' });
    expect(paths({ ...base, queues: [queue('p'), queue('x'), src] }, ['p', 'x'])).toEqual({ p: ['fed by dead-lettering from src'] });
    // A fanout binding into src: its messages may carry any key.
    const any = { exchanges, bindings: [...base.bindings, bind('fan', 'src')] };
    expect(paths({ ...any, queues: [queue('p'), queue('x'), src] }, ['p', 'x'])).toEqual({
      p: ['fed by dead-lettering from src'],
      x: ['fed by dead-lettering from src'],
    });
  });

  it('assumes a headers exchange routes to every queue bound to it, and reports a queue dead-lettering into itself', () => {
    const topology = {
      queues: [queue('p', { 'x-dead-letter-exchange': 'h' })],
      exchanges: [exchange('h', 'headers')],
      bindings: [bind('h', 'p')],
    };
    expect(paths(topology)).toEqual({ p: ['fed by dead-lettering from p'] });
  });

  it('ignores streams, missing dead-letter exchanges and unprotected targets', () => {
    expect(paths({ queues: [queue('p'), queue('src', { 'x-dead-letter-exchange': 'gone' })], bindings: [bind('gone', 'p')] })).toEqual({});
    const topology = {
      queues: [queue('p'), queue('s', { 'x-dead-letter-exchange': 'dlx' }, { type: 'stream' }), queue('src', { 'x-dead-letter-exchange': 'dlx' })],
      exchanges: [exchange('dlx', 'fanout')],
      bindings: [bind('dlx', 'p'), bind('dlx', 'u')],
    };
    expect(paths(topology)).toEqual({ p: ['fed by dead-lettering from src'] });
  });

  it('reports a federated protected queue from its policy', () => {
    const policies = new Map([['fed', { 'federation-upstream-set': 'all' }]]);
    expect(paths({ queues: [queue('p', {}, { policy: 'fed' })], policies })).toEqual({
      p: ['fed by a federation link (policy fed), which publishes to the default exchange'],
    });
  });

  it('matches topic keys as the broker does', () => {
    const m = (pattern: string, key: string) => topicMatches(pattern.split('.'), key.split('.'));
    expect([m('a.*', 'a.b'), m('a.#', 'a'), m('#', 'x.y'), m('a.#.z', 'a.b.c.z'), m('*.b', 'a.b')]).toEqual([true, true, true, true, true]);
    expect([m('a.*', 'a'), m('a.*', 'a.b.c'), m('a.#.z', 'a.b'), m('b.#', 'a.b')]).toEqual([false, false, false, false]);
  });
});
