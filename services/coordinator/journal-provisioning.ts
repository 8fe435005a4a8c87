/**
 * Journal provisioning, discovery's hands on one vhost (discovery.ts decides which queues get a
 * journal; this declares and binds them). A journal is declared only when missing, then bound
 * exactly like its source queue plus the fence exchange, or in firehose mode only to the relay
 * exchange.
 *
 * Invariant: the fence binding (or in firehose mode the relay's fence key) is made on every pass,
 * whatever the listing says, so a fence never misses a protected journal.
 */
import type { Channel } from 'amqplib';
import {
  type Clock,
  errorMessage,
  fenceExchangeName,
  type Logger,
  MAX_FILE_NAME_BYTES,
  relayExchangeName,
  relayFenceKey,
  streamDirectoryLength,
} from '../core/index.js';
import type { BindingInfo, VhostConnections } from '../core/amqp/index.js';
import { journalArguments, type JournalRetention } from './journal-retention.js';
import { CREATED_AT_ARGUMENT } from './journal-renewals.js';

/** How a journal is fed: by bindings, through the firehose relay, or both while the firehose drains. */
export type JournalRoute = 'bindings' | 'firehose' | 'draining';

export interface JournalProvisioningContext {
  namespace: string;
  /** x-max-age of new journal streams. */
  journalMaxAge: string;
  /** x-max-length-bytes of new journal streams; 0 or absent for none. */
  journalMaxBytes?: number;
  /** Bounds what journals keep from the broker's disk. */
  retention?: JournalRetention;
  connections: VhostConnections;
  /** Stamps a new journal's x-tidemark-created-at. */
  clock: Clock;
  log: Logger;
}

/** A channel for provisioning in `vhost`; its errors are logged, the caller closes it. */
export async function provisioningChannel(context: JournalProvisioningContext, vhost: string): Promise<Channel> {
  const connection = await context.connections.connect(vhost);
  const channel = await connection.createChannel();
  channel.on('error', (err) => context.log.warn('provisioning channel failed', { vhost, err: errorMessage(err) }));
  return channel;
}

/**
 * Declares the journal stream if missing and makes its bindings what `route` asks for: the
 * source's bindings plus the fence exchange, or in firehose mode only the relay exchange (under
 * the journal's name and the fence key); while the firehose drains, both. Returns when it
 * declared the journal (its x-tidemark-created-at), undefined if the journal existed.
 */
export async function provisionJournal(
  context: JournalProvisioningContext,
  channel: Channel,
  journal: string,
  wanted: BindingInfo[],
  all: BindingInfo[],
  existing: Set<string>,
  route: JournalRoute,
): Promise<number | undefined> {
  const { namespace } = context;
  let declaredAt: number | undefined;
  // An existing journal is not declared again: its arguments (x-max-age) were fixed when it was
  // made, and a declaration with other values would fail.
  if (!existing.has(journal)) {
    const createdAt = context.clock.now();
    await channel.assertQueue(journal, {
      durable: true,
      arguments: {
        ...journalArguments(context.journalMaxAge, context.journalMaxBytes ?? 0, context.retention?.boundBytes),
        [CREATED_AT_ARGUMENT]: createdAt,
      },
    });
    existing.add(journal);
    declaredAt = createdAt;
  }
  const own: Array<{ source: string; routingKey: string }> = [];
  if (route !== 'firehose') own.push({ source: fenceExchangeName(namespace), routingKey: '' });
  if (route !== 'bindings') {
    const relay = relayExchangeName(namespace);
    own.push({ source: relay, routingKey: journal }, { source: relay, routingKey: relayFenceKey(namespace) });
  }
  // Bound on every pass, whatever the listing says: a fence must never miss a protected journal.
  for (const b of own) await channel.bindQueue(journal, b.source, b.routingKey);
  const sources = route === 'firehose' ? [] : wanted;
  const current = all.filter((b) => b.destination === journal && b.destinationType === 'queue' && b.source !== '');
  const same = (a: { source: string; routingKey: string; arguments?: Record<string, unknown> }, b: BindingInfo) =>
    a.source === b.source && a.routingKey === b.routingKey && JSON.stringify(a.arguments ?? {}) === JSON.stringify(b.arguments ?? {});
  for (const b of sources) {
    if (!current.some((c) => same(b, c))) await channel.bindQueue(journal, b.source, b.routingKey, b.arguments ?? {});
  }
  for (const c of current) {
    if (![...own, ...sources].some((b) => same(b, c))) await channel.unbindQueue(journal, c.source, c.routingKey, c.arguments ?? {});
  }
  return declaredAt;
}

/**
 * Deletes the journal an earlier Tidemark named `<namespace>.journal.<queue>` where that name
 * does not fit the vhost's stream directory (services/core/format/names.ts): RabbitMQ never started its
 * stream, so it holds nothing, and every publish routed to it waits for a confirm that never
 * comes. Deleting it releases those publishes; the queue's journal is `journal` now.
 */
export async function deleteUnstartableJournal(
  context: JournalProvisioningContext,
  channel: Channel,
  vhost: string,
  queue: string,
  journal: string,
  streams: Set<string>,
  existing: Set<string>,
): Promise<void> {
  const { namespace, log } = context;
  const old = `${namespace}.journal.${queue}`;
  if (old === journal || !streams.has(old) || streamDirectoryLength(vhost, old) <= MAX_FILE_NAME_BYTES) return;
  await channel.deleteQueue(old);
  streams.delete(old);
  existing.delete(old);
  log.warn(
    'deleted a stream whose name is too long for RabbitMQ\'s stream directory: it never started and held nothing, ' +
      'and publishes routed to it were never confirmed; the queue is journaled in `journal` now',
    { vhost, queue, stream: old, journal },
  );
}
