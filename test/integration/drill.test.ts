import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import amqp, { type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DRILL_VHOST_PREFIX,
  MessageDigest,
  createScratchVhost,
  expectedDigest,
  reconcile,
  removeScratchVhost,
  restoredDigest,
  scratchVhostName,
} from '../../services/coordinator/drill.js';
import { ManagementClient } from '../../services/core/amqp/management-client.js';
import { FailedPreconditionError } from '../../services/core/errors.js';
import { ORIGIN_OFFSET_HEADER } from '../../services/core/format/names.js';
import { encodeSegment, gzipCodec, segmentRefOf } from '../../services/core/format/segment-codec.js';
import type { PrefixSpec } from '../../services/core/format/segment-reader.js';
import { segmentKey } from '../../services/core/store/keys.js';
import { LocalStore } from '../../services/core/store/local-store.js';
import type { Record as JournalRecord, SegmentRef } from '../../services/gen/tidemark/v1/store.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName } from '../helpers/services.js';

/** A restored message: its body and the origin offset header it carries (none if undefined). */
interface Restored {
  body: Buffer;
  offset: number | undefined;
}

const IDLE_MS = 300;
const QUEUE_TYPES = ['classic', 'quorum', 'stream'] as const;

let amqpUrl: string;
let managementUrl: string;
let user: string;
let management: ManagementClient;
let vhost: string;
let conn: ChannelModel;
const scratch: string[] = [];

beforeAll(async () => {
  const services = await testServices();
  amqpUrl = services.amqpUrl;
  managementUrl = services.managementUrl;
  user = decodeURIComponent(new URL(amqpUrl).username) || 'guest';
  management = new ManagementClient(managementUrl, { timeoutMs: 5000 });
  vhost = uniqueName('tm-drill');
  await createTestVhost(managementUrl, vhost);
  conn = await amqp.connect(amqpUrlForVhost(amqpUrl, vhost));
});

afterAll(async () => {
  await conn?.close();
  if (managementUrl) {
    await deleteTestVhost(managementUrl, vhost);
    for (const name of scratch) await deleteTestVhost(managementUrl, name);
  }
});

/** Bodies of varied sizes: empty, binary, and one larger than a frame. */
function sampleBodies(n: number): Buffer[] {
  return Array.from({ length: n }, (_, i) => {
    if (i === 0) return Buffer.alloc(0);
    if (i === 1) return Buffer.from([0, 255, 1, 254]);
    if (i === 2) return Buffer.alloc(200_000, 'x');
    return Buffer.from(`order ${i} ${'.'.repeat(i % 7)}`);
  });
}

/** Origin offsets with gaps (fences and earlier cuts leave holes), strictly increasing. */
function withOffsets(bodies: Buffer[]): Restored[] {
  return bodies.map((body, i) => ({ body, offset: 1000 + 2 * i }));
}

function digestOf(bodies: Buffer[]): { messages: number; sha256: string } {
  const d = new MessageDigest();
  for (const b of bodies) d.add(b);
  return { messages: d.messages, sha256: d.hex() };
}

/** Declares a fresh queue of the type in the test vhost and publishes the messages, confirmed. */
async function restoredQueue(type: string, messages: Restored[]): Promise<string> {
  const queue = uniqueName(`drill-${type}`);
  const ch = await conn.createConfirmChannel();
  try {
    await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': type } });
    for (const m of messages) {
      const headers = m.offset === undefined ? {} : { [ORIGIN_OFFSET_HEADER]: m.offset };
      ch.sendToQueue(queue, m.body, { persistent: true, headers });
    }
    await ch.waitForConfirms();
  } finally {
    await ch.close();
  }
  return queue;
}

function readBack(queue: string, type: string, expectedMessages: number) {
  return restoredDigest(amqpUrl, vhost, queue, { type, expectedMessages, idleMs: IDLE_MS });
}

describe('MessageDigest', () => {
  it('is sha256 over 8-byte big-endian length then body, per message in order', () => {
    const d = new MessageDigest();
    d.add(Buffer.from('ab'));
    d.add(Buffer.alloc(0));
    const reference = createHash('sha256')
      .update(Buffer.from([0, 0, 0, 0, 0, 0, 0, 2]))
      .update('ab')
      .update(Buffer.from([0, 0, 0, 0, 0, 0, 0, 0]))
      .digest('hex');
    expect(d.messages).toBe(2);
    expect(d.hex()).toBe(reference);
    // hex() does not end the digest.
    d.add(Buffer.from('c'));
    expect(d.hex()).toBe(digestOf([Buffer.from('ab'), Buffer.alloc(0), Buffer.from('c')]).sha256);
  });

  it('tells apart the same bytes split into messages differently', () => {
    expect(digestOf([Buffer.from('ab'), Buffer.from('c')]).sha256).not.toBe(digestOf([Buffer.from('a'), Buffer.from('bc')]).sha256);
    expect(digestOf([Buffer.from('a')]).sha256).not.toBe(digestOf([Buffer.from('a'), Buffer.alloc(0)]).sha256);
  });
});

describe('scratch vhost', () => {
  it('names a fresh vhost under the drill prefix for the checkpoint', () => {
    const a = scratchVhostName(42);
    expect(a).toMatch(/^tidemark-drill-42-[0-9a-f]{6}$/);
    expect(a.startsWith(DRILL_VHOST_PREFIX)).toBe(true);
    expect(scratchVhostName(42)).not.toBe(a);
  });

  it('is created with full permissions for the AMQP user, refused if it exists, and removed with its queues', async () => {
    const name = scratchVhostName(7);
    scratch.push(name);
    await createScratchVhost(management, name, user);
    expect(await management.listVhosts()).toContain(name);

    // The restore's user can declare, publish and read there.
    const c = await amqp.connect(amqpUrlForVhost(amqpUrl, name));
    try {
      const ch = await c.createConfirmChannel();
      await ch.assertQueue('orders', { durable: true });
      ch.sendToQueue('orders', Buffer.from('x'));
      await ch.waitForConfirms();
      expect((await ch.checkQueue('orders')).messageCount).toBe(1);
    } finally {
      await c.close();
    }

    await expect(createScratchVhost(management, name, user)).rejects.toThrow(FailedPreconditionError);
    expect(await management.getQueue(name, 'orders')).toBeDefined(); // the refusal left it alone

    expect(await removeScratchVhost(management, name)).toBe(true);
    expect(await management.listVhosts()).not.toContain(name);
    expect(await removeScratchVhost(management, name)).toBe(true); // already gone is removed
  });

  it('refuses to create or remove a vhost outside the drill prefix', async () => {
    await expect(createScratchVhost(management, uniqueName('tm-not-a-drill'), user)).rejects.toThrow(/must start with tidemark-drill-/);
    expect(await removeScratchVhost(management, vhost)).toBe(false);
    expect(await management.listVhosts()).toContain(vhost);
  });

  it('reports a failed removal by returning false, not by throwing', async () => {
    const unreachable = new ManagementClient('http://guest:guest@127.0.0.1:1', { timeoutMs: 1000 });
    expect(await removeScratchVhost(unreachable, scratchVhostName(1))).toBe(false);
  });
});

describe('restoredDigest', () => {
  it.each(QUEUE_TYPES)('of a %s queue equals the digest of the same bodies, in order', async (type) => {
    const bodies = sampleBodies(60);
    const queue = await restoredQueue(type, withOffsets(bodies));
    const restored = await readBack(queue, type, bodies.length);
    expect(restored).toEqual({ ...digestOf(bodies), originOrdered: true, error: '' });
    const result = reconcile(vhost, queue, digestOf(bodies), restored);
    expect(result).toMatchObject({ ok: true, error: '', expectedMessages: 60, restoredMessages: 60 });
  });

  const swap = (messages: Restored[], i: number): Restored[] => {
    const out = [...messages];
    [out[i], out[i + 1]] = [out[i + 1], out[i]];
    return out;
  };
  const mismatches: [string, (m: Restored[]) => Restored[], RegExp, RegExp | undefined][] = [
    ['a missing message', (m) => m.filter((_, i) => i !== 10), /counts differ by 1 \(1 missing\)/, /order broken/],
    ['an extra message', (m) => [...m, { body: Buffer.from('extra'), offset: 5000 }], /counts differ by 1 \(1 extra\)/, /order broken/],
    ['a changed body', (m) => m.map((x, i) => (i === 5 ? { ...x, body: Buffer.from('order 5 changed') } : x)), /checksum differs: same count/, /order broken|counts differ/],
    ['a reordered pair', (m) => swap(m, 3), /order broken: x-tidemark-origin-offset does not strictly increase/, /counts differ/],
  ];
  for (const type of QUEUE_TYPES) {
    it.each(mismatches)(`makes reconcile fail for a ${type} queue with %s`, async (_, alter, says, doesNotSay) => {
      const bodies = sampleBodies(20);
      const expected = digestOf(bodies);
      const messages = alter(withOffsets(bodies));
      const queue = await restoredQueue(type, messages);
      const restored = await readBack(queue, type, bodies.length);
      expect(restored.messages).toBe(messages.length);
      const result = reconcile(vhost, queue, expected, restored);
      expect(result.ok).toBe(false);
      expect(result.error).toMatch(says);
      if (doesNotSay) expect(result.error).not.toMatch(doesNotSay);
      expect(result.restoredSha256).not.toBe(result.expectedSha256);
    });
  }

  it('fails the queue when messages carry no origin offset, since order cannot be checked', async () => {
    const bodies = sampleBodies(5);
    const queue = await restoredQueue('classic', bodies.map((body) => ({ body, offset: undefined })));
    const restored = await readBack(queue, 'classic', bodies.length);
    expect(restored.sha256).toBe(digestOf(bodies).sha256);
    expect(restored.error).toMatch(/has no x-tidemark-origin-offset header/);
    const result = reconcile(vhost, queue, digestOf(bodies), restored);
    expect(result.ok).toBe(false);
    expect(result.error).toMatch(/restore with origin headers/);
  });

  it('reports a queue that is not there as an error instead of throwing or hanging', async () => {
    const started = Date.now();
    const restored = await readBack('no-such-queue', 'classic', 3);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(restored).toMatchObject({ messages: 0, originOrdered: true });
    expect(restored.error).toMatch(/no-such-queue.*NOT_FOUND/s);
    const result = reconcile(vhost, 'no-such-queue', digestOf(sampleBodies(3)), restored);
    expect(result.ok).toBe(false);
    expect(result.error).toMatch(/counts differ by 3 \(3 missing\)/);
  });

  it('rejects with the reason when aborted', async () => {
    const queue = await restoredQueue('stream', withOffsets(sampleBodies(3)));
    const controller = new AbortController();
    const reading = restoredDigest(amqpUrl, vhost, queue, { type: 'stream', expectedMessages: 1000, idleMs: 60_000, signal: controller.signal });
    setTimeout(() => controller.abort(new Error('drill cancelled')), 300);
    await expect(reading).rejects.toThrow('drill cancelled');
  });
});

describe('expectedDigest over checkpoint data', () => {
  let dir: string;
  let store: LocalStore;
  const queue = 'orders.eu';

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tidemark-drill-'));
    store = new LocalStore(dir, { fsync: false });
    await store.init();
  });

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  function record(offset: number, fenceEpoch: number): JournalRecord {
    return {
      offset,
      exchange: fenceEpoch ? 'tidemark.fence' : 'orders',
      routingKey: `eu.${offset}`,
      properties: undefined,
      body: fenceEpoch ? Buffer.from(JSON.stringify({ epoch: fenceEpoch })) : Buffer.from(`order at ${offset}`),
      captureTimeMs: 1_700_000_000_000 + offset,
      fenceEpoch,
    };
  }

  /** Writes offsets first..last as a segment, as a worker's capture does; `fences` are fence records. */
  async function writeSegment(first: number, last: number, fences: number[]): Promise<SegmentRef> {
    const records: JournalRecord[] = [];
    for (let off = first; off <= last; off++) records.push(record(off, fences.includes(off) ? 9 : 0));
    const { bytes, sha256 } = await encodeSegment(
      { formatVersion: 1, vhost, queue, journal: `tidemark.journal.${queue}`, firstOffset: first, lastOffset: last, records },
      gzipCodec,
    );
    const key = segmentKey(vhost, queue, first, last, sha256);
    await store.put(key, bytes);
    return segmentRefOf(key, records, bytes, sha256, gzipCodec.name);
  }

  it('digests the data records of [start, cut) in order, fences left out, and matches a restore of them', async () => {
    // A fence at 7 and one at 15; the cut (18) falls inside the second segment.
    const segments = [await writeSegment(0, 9, [7]), await writeSegment(10, 24, [15])];
    const spec: PrefixSpec = { vhost, queue, startOffset: 3, cutOffset: 18, segments };
    const data = [];
    for (let off = 3; off < 18; off++) if (off !== 7 && off !== 15) data.push({ body: record(off, 0).body, offset: off });

    const expected = await expectedDigest(store, spec);
    expect(expected).toEqual(digestOf(data.map((d) => d.body)));
    expect(expected.messages).toBe(13);

    // What a restore publishes for this prefix reads back to the same digest.
    const restoredQ = await restoredQueue('classic', data);
    const result = reconcile(vhost, restoredQ, expected, await readBack(restoredQ, 'classic', expected.messages));
    expect(result).toMatchObject({ ok: true, error: '', expectedSha256: expected.sha256, restoredSha256: expected.sha256 });
  });

  it('throws, naming the gap, when the checkpoint data is incomplete, and honours an aborted signal', async () => {
    const segments = [await writeSegment(30, 34, [])];
    await expect(expectedDigest(store, { vhost, queue, startOffset: 30, cutOffset: 40, segments })).rejects.toThrow(/ends at offset 35/);
    await expect(expectedDigest(store, { vhost, queue, startOffset: 30, cutOffset: 35, segments }, AbortSignal.abort(new Error('stop')))).rejects.toThrow('stop');
  });
});
