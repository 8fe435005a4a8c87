/**
 * Entry paths a journal cannot see, found from a vhost's topology. A journal is bound like its
 * queue, so it receives what a publish routes through those bindings (exchange-to-exchange
 * bindings, alternate exchanges and CC/BCC included: measured on RabbitMQ 3.10.8). Two ways in
 * bypass every publish route, and no counter of the queue's publishes sees them:
 *
 * - Dead-lettering. The broker routes a dead-lettered message through the dead-letter exchange
 *   into queues, but never into a stream (3.10.8), and does not count it in the target's
 *   `message_stats.publish`, nor trace it in the firehose. Any queue of the vhost (the protected
 *   queue itself included) whose dead-letter exchange can route to a protected queue feeds it
 *   messages no checkpoint holds.
 * - Queue federation. A federated queue's link publishes what it fetches from the upstream to the
 *   default exchange; the publish counter sees those (coverage counts them once idle), but the
 *   policy says so before any message moves.
 *
 * Both are static facts about the topology, so every discovery pass reports them without waiting
 * for traffic or a baseline (services/coordinator/coverage.ts). Where routing cannot be decided
 * from the topology alone (headers and plugin exchanges, the message's own routing keys), the
 * route is assumed to exist: a path may be reported that no message takes, never the reverse.
 */
import type { BindingInfo, ExchangeInfo, QueueInfo } from '../core/amqp/index.js';

export interface VhostTopology {
  queues: QueueInfo[];
  bindings: BindingInfo[];
  exchanges: ExchangeInfo[];
  /** Policy definitions by name (see ManagementClient.listPolicies). */
  policies: ReadonlyMap<string, Record<string, unknown>>;
}

/** A routing key, or `undefined` for "any key" (not known from the topology). */
type Key = string | undefined;

/** What a queue dead-letters to: the queue argument wins over the policy, key by key (as the broker does). */
export function deadLetterTarget(queue: QueueInfo, policies: VhostTopology['policies']): { exchange: string; routingKey: Key } | undefined {
  const policy = (queue.policy !== undefined && policies.get(queue.policy)) || {};
  const pick = (argument: string, key: string): unknown => queue.arguments[argument] ?? policy[key];
  const exchange = pick('x-dead-letter-exchange', 'dead-letter-exchange');
  if (typeof exchange !== 'string') return undefined;
  const routingKey = pick('x-dead-letter-routing-key', 'dead-letter-routing-key');
  return { exchange, routingKey: typeof routingKey === 'string' ? routingKey : undefined };
}

/**
 * The uncapturable entry paths of each of `protectedNames` (queues of one vhost), as reasons for
 * a coverage gap; queues without one are left out.
 */
export function uncapturablePaths(protectedNames: Iterable<string>, topology: VhostTopology): Map<string, string[]> {
  const targets = new Set(protectedNames);
  const paths = new Map<string, string[]>();
  const add = (queue: string, reason: string) => paths.set(queue, [...(paths.get(queue) ?? []), reason]);
  const router = new Router(topology);
  for (const source of [...topology.queues].sort((a, b) => a.name.localeCompare(b.name))) {
    if (source.type === 'stream') continue; // streams never dead-letter
    const target = deadLetterTarget(source, topology.policies);
    if (!target) continue;
    const keys = target.routingKey !== undefined ? [target.routingKey] : router.keysInto(source.name);
    const reached = new Set<string>();
    for (const key of keys) for (const q of router.route(target.exchange, key)) reached.add(q);
    for (const q of [...reached].filter((q) => targets.has(q)).sort()) add(q, `fed by dead-lettering from ${source.name}`);
  }
  for (const queue of topology.queues) {
    if (!targets.has(queue.name) || queue.policy === undefined) continue;
    const definition = topology.policies.get(queue.policy) ?? {};
    if (definition['federation-upstream'] !== undefined || definition['federation-upstream-set'] !== undefined) {
      add(queue.name, `fed by a federation link (policy ${queue.policy}), which publishes to the default exchange`);
    }
  }
  return paths;
}

/** Which queues a message with a given routing key reaches from an exchange, as far as the topology tells. */
class Router {
  private readonly exchanges: Map<string, ExchangeInfo>;
  private readonly queueNames: Set<string>;
  /** Bindings by source exchange, and queue bindings by destination (a pass may see tens of thousands). */
  private readonly from = new Map<string, BindingInfo[]>();
  private readonly into = new Map<string, BindingInfo[]>();

  constructor(topology: VhostTopology) {
    this.exchanges = new Map(topology.exchanges.map((e) => [e.name, e]));
    this.queueNames = new Set(topology.queues.map((q) => q.name));
    for (const b of topology.bindings) {
      if (b.source === '') continue; // the implicit default-exchange bindings
      append(this.from, b.source, b);
      if (b.destinationType === 'queue') append(this.into, b.destination, b);
    }
  }

  /**
   * The routing keys messages of `queue` can carry, which dead-lettering keeps when no dead-letter
   * routing key is set: its name (default exchange) and the keys of its direct bindings; any key
   * if a binding of another type (or CC/BCC, not known here) can bring messages in.
   */
  keysInto(queue: string): Key[] {
    const keys: Key[] = [queue];
    for (const b of this.into.get(queue) ?? []) {
      keys.push(this.exchanges.get(b.source)?.type === 'direct' ? b.routingKey : undefined);
    }
    return keys.includes(undefined) ? [undefined] : [...new Set(keys)];
  }

  /** Queues reached from `exchange` with `key`, following exchange-to-exchange bindings and alternate exchanges. */
  route(exchange: string, key: Key, seen = new Set<string>()): Set<string> {
    const reached = new Set<string>();
    if (seen.has(exchange)) return reached;
    seen.add(exchange);
    if (exchange === '') {
      // The default exchange: the queue named by the key, or any queue.
      if (key === undefined) this.queueNames.forEach((q) => reached.add(q));
      else if (this.queueNames.has(key)) reached.add(key);
      return reached;
    }
    const info = this.exchanges.get(exchange);
    if (!info) return reached; // a dead-letter exchange that does not exist drops the message
    let routed = false;
    for (const b of this.from.get(exchange) ?? []) {
      if (!matches(info.type, b.routingKey, key)) continue;
      routed = true;
      if (b.destinationType === 'queue') reached.add(b.destination);
      else this.route(b.destination, key, seen).forEach((q) => reached.add(q));
    }
    // Unrouted messages go to the alternate exchange; when routing is not known, either may happen.
    const alternate = info.arguments['alternate-exchange'];
    if (typeof alternate === 'string' && (!routed || key === undefined || !EXACT_TYPES.has(info.type))) {
      this.route(alternate, key, seen).forEach((q) => reached.add(q));
    }
    return reached;
  }
}

function append<T>(map: Map<string, T[]>, key: string, value: T): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

/** Exchange types whose routing the topology fully decides, given the routing key. */
const EXACT_TYPES = new Set(['direct', 'fanout', 'topic']);

/** Whether a binding with `bindingKey` on an exchange of `type` can route a message with `key`. */
function matches(type: string, bindingKey: string, key: Key): boolean {
  if (key === undefined) return true;
  switch (type) {
    case 'fanout':
      return true;
    case 'direct':
      return bindingKey === key;
    case 'topic':
      return topicMatches(bindingKey.split('.'), key.split('.'));
    default:
      // headers and plugin exchanges route on what the topology does not show.
      return true;
  }
}

/** AMQP topic matching: `*` is one word, `#` zero or more. */
export function topicMatches(pattern: string[], words: string[]): boolean {
  if (pattern.length === 0) return words.length === 0;
  const [head, ...rest] = pattern;
  if (head === '#') return topicMatches(rest, words) || (words.length > 0 && topicMatches(pattern, words.slice(1)));
  if (words.length === 0) return false;
  return (head === '*' || head === words[0]) && topicMatches(rest, words.slice(1));
}
