import amqp, { type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toFieldTable } from '../../services/core/format/field-table.js';
import { ConfigError } from '../../services/core/errors.js';
import type { QueueDefinition } from '../../services/gen/tidemark/v1/store.js';
import { parseRestoreMode, preflightTargets, type PreflightTarget, type RestoreMode } from '../../services/coordinator/restore-preflight.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName } from '../helpers/services.js';

const vhost = uniqueName('tm-preflight');
const MODES: RestoreMode[] = ['recreate', 'append', 'refuse'];

let amqpUrl: string;
let managementUrl: string;
let conn: ChannelModel;

function definition(name: string, type: string, args: Record<string, unknown> = {}): QueueDefinition {
  return { vhost, name, type, durable: true, autoDelete: false, arguments: toFieldTable(args), bindings: [] };
}

function target(name: string, type: string, options: { args?: Record<string, unknown>; started?: boolean; vhost?: string } = {}): PreflightTarget {
  return { vhost: options.vhost ?? vhost, name, definition: definition(name, type, options.args), started: options.started ?? false };
}

/** Preflight of one target in one mode. */
async function preflight(t: PreflightTarget, mode: RestoreMode) {
  const [result] = await preflightTargets(amqpUrl, [t], mode);
  return result;
}

async function declare(name: string, args: Record<string, unknown>, messages: number): Promise<void> {
  const ch = await conn.createConfirmChannel();
  await ch.assertQueue(name, { durable: true, arguments: args });
  for (let i = 0; i < messages; i += 1) ch.sendToQueue(name, Buffer.from(`m${i}`));
  await ch.waitForConfirms();
  await ch.close();
}

/** Ready messages of a classic or quorum queue, read passively. */
async function readyCount(name: string): Promise<number> {
  const ch = await conn.createChannel();
  const { messageCount } = await ch.checkQueue(name);
  await ch.close();
  return messageCount;
}

/** How many messages a stream delivers from its first offset within a short wait. */
async function streamLength(name: string): Promise<number> {
  const ch = await conn.createChannel();
  await ch.prefetch(100);
  let seen = 0;
  await ch.consume(name, () => void (seen += 1), { arguments: { 'x-stream-offset': 'first' } });
  await new Promise((r) => setTimeout(r, 500));
  await ch.close();
  return seen;
}

async function queueExists(name: string): Promise<boolean> {
  const ch = await conn.createChannel();
  ch.on('error', () => {});
  const exists = await ch.checkQueue(name).then(
    () => true,
    () => false,
  );
  await ch.close().catch(() => {});
  return exists;
}

beforeAll(async () => {
  ({ amqpUrl, managementUrl } = await testServices());
  await createTestVhost(managementUrl, vhost);
  conn = await amqp.connect(amqpUrlForVhost(amqpUrl, vhost));
  await declare('classic.empty', {}, 0);
  await declare('classic.full', {}, 3);
  await declare('quorum.full', { 'x-queue-type': 'quorum' }, 3);
  await declare('stream.empty', { 'x-queue-type': 'stream' }, 0);
  await declare('stream.full', { 'x-queue-type': 'stream' }, 3);
  await declare('classic.ttl', { 'x-message-ttl': 60_000 }, 0);
});

afterAll(async () => {
  await conn?.close();
  await deleteTestVhost(managementUrl, vhost);
});

describe('preflightTargets against RabbitMQ', () => {
  it.each(MODES)('a missing target is no conflict in mode %s, and preflight does not create it', async (mode) => {
    const result = await preflight(target('not.there', 'quorum'), mode);
    expect(result).toMatchObject({ exists: false, holdsMessages: false, conflict: '' });
    expect(await queueExists('not.there')).toBe(false);
  });

  it('an empty target with the same arguments is fine to recreate or append to, but refused in mode refuse', async () => {
    for (const t of [target('classic.empty', 'classic'), target('stream.empty', 'stream')]) {
      expect(await preflight(t, 'recreate')).toMatchObject({ exists: true, holdsMessages: false, conflict: '' });
      expect(await preflight(t, 'append')).toMatchObject({ exists: true, holdsMessages: false, conflict: '' });
      const refused = await preflight(t, 'refuse');
      expect(refused.conflict).toContain(`target queue ${vhost}/${t.name} already exists (it is empty)`);
      expect(refused.conflict).toMatch(/--prefix\/--map.*--mode recreate.*--mode append/);
    }
  });

  describe.each([
    ['classic.full', 'classic'],
    ['quorum.full', 'quorum'],
    ['stream.full', 'stream'],
  ])('a %s target that holds messages', (name, type) => {
    it('is a conflict in mode recreate, saying it would duplicate and what to do', async () => {
      const result = await preflight(target(name, type), 'recreate');
      expect(result).toMatchObject({ exists: true, holdsMessages: true });
      expect(result.conflict).toContain(`target queue ${vhost}/${name} already holds messages`);
      expect(result.conflict).toMatch(/duplicating/);
      expect(result.conflict).toMatch(/--prefix\/--map.*delete or purge it.*--mode append/);
      // Only the holding is wrong: the arguments are the same.
      expect(result.conflict).not.toMatch(/other flags or arguments/);
    });

    it('is no conflict in mode append', async () => {
      expect(await preflight(target(name, type), 'append')).toMatchObject({ exists: true, holdsMessages: true, conflict: '' });
    });

    it('is a conflict in mode refuse', async () => {
      const result = await preflight(target(name, type), 'refuse');
      expect(result.conflict).toContain(`target queue ${vhost}/${name} already exists (it holds messages)`);
    });

    it('keeps its messages: preflight takes none of them', async () => {
      for (const mode of MODES) await preflight(target(name, type), mode);
      expect(type === 'stream' ? await streamLength(name) : await readyCount(name)).toBe(3);
    });
  });

  it('finds messages in a stream even when the definition calls it classic', async () => {
    const result = await preflight(target('stream.full', 'classic'), 'recreate');
    expect(result.holdsMessages).toBe(true);
    expect(result.conflict).toContain('already holds messages');
  });

  it('is a conflict in mode recreate when the existing arguments differ, quoting the broker, and changes nothing', async () => {
    const ttl = await preflight(target('classic.ttl', 'classic', { args: { 'x-message-ttl': 5_000 } }), 'recreate');
    expect(ttl).toMatchObject({ exists: true, holdsMessages: false });
    expect(ttl.conflict).toContain(`target queue ${vhost}/classic.ttl exists with other flags or arguments than the checkpoint's classic queue`);
    expect(ttl.conflict).toMatch(/inequivalent arg 'x-message-ttl'.*received .*'5000'.* but current is .*'60000'/);
    expect(ttl.conflict).toMatch(/--prefix\/--map.*delete it.*--mode append/);

    const missingArg = await preflight(target('classic.ttl', 'classic'), 'recreate');
    expect(missingArg.conflict).toMatch(/inequivalent arg 'x-message-ttl'.*received none/);

    const otherType = await preflight(target('classic.empty', 'quorum'), 'recreate');
    expect(otherType.conflict).toMatch(/checkpoint's quorum queue.*inequivalent arg 'x-queue-type'/);

    // Appending publishes into the queue as it is: its arguments do not matter.
    expect((await preflight(target('classic.ttl', 'classic', { args: { 'x-message-ttl': 5_000 } }), 'append')).conflict).toBe('');
    // The refused re-declare left the queue as it was.
    expect((await preflight(target('classic.ttl', 'classic', { args: { 'x-message-ttl': 60_000 } }), 'recreate')).conflict).toBe('');
  });

  it('reports both problems of a target that holds messages and has other arguments', async () => {
    const result = await preflight(target('quorum.full', 'quorum', { args: { 'x-delivery-limit': 3 } }), 'recreate');
    expect(result.conflict).toMatch(/already holds messages.*; target queue .* exists with other flags or arguments/);
  });

  it('accepts a target this restore already started publishing into, in every mode', async () => {
    for (const mode of MODES) {
      for (const [name, type] of [
        ['classic.full', 'classic'],
        ['stream.full', 'stream'],
      ]) {
        const result = await preflight(target(name, type, { started: true }), mode);
        expect(result, `${name} in mode ${mode}`).toMatchObject({ exists: true, holdsMessages: true, conflict: '' });
      }
    }
  });

  it('still reports other arguments of a started target in mode recreate', async () => {
    const result = await preflight(target('classic.ttl', 'classic', { started: true }), 'recreate');
    expect(result.conflict).toMatch(/inequivalent arg 'x-message-ttl'/);
  });

  it('makes a missing vhost a conflict for each of its targets, and probes the other vhosts', async () => {
    const missingVhost = uniqueName('tm-preflight-missing');
    const targets = [
      target('a', 'classic', { vhost: missingVhost }),
      target('classic.full', 'classic'),
      target('b', 'quorum', { vhost: missingVhost }),
    ];
    const results = await preflightTargets(amqpUrl, targets, 'append');
    expect(results.map((r) => r.target)).toEqual(targets);
    for (const i of [0, 2]) {
      expect(results[i]).toMatchObject({ exists: false, holdsMessages: false });
      expect(results[i].conflict).toContain(`vhost "${missingVhost}" does not exist on the target broker`);
      expect(results[i].conflict).toMatch(/create it.*or restore into another --target-vhost/);
    }
    expect(results[1]).toMatchObject({ exists: true, holdsMessages: true, conflict: '' });
  });

  it('makes a refused login a conflict without showing the password', async () => {
    const url = new URL(amqpUrl);
    url.password = 'not-the-password';
    const [result] = await preflightTargets(url.toString(), [target('classic.full', 'classic')], 'recreate');
    expect(result.conflict).toMatch(/refused the login.*check the user and password/);
    expect(result.conflict).not.toContain('not-the-password');
  });

  it('returns nothing for no targets', async () => {
    expect(await preflightTargets(amqpUrl, [], 'recreate')).toEqual([]);
  });
});

describe('parseRestoreMode', () => {
  it('defaults to recreate, or append when --append is set', () => {
    expect(parseRestoreMode('', false)).toBe('recreate');
    expect(parseRestoreMode('', true)).toBe('append');
  });

  it('takes each mode by name', () => {
    for (const mode of MODES) expect(parseRestoreMode(mode, false)).toBe(mode);
    expect(parseRestoreMode('append', true)).toBe('append');
  });

  it('refuses --append with another mode', () => {
    expect(() => parseRestoreMode('refuse', true)).toThrow(ConfigError);
    expect(() => parseRestoreMode('recreate', true)).toThrow(/--append and --mode recreate/);
  });

  it('refuses an unknown mode, naming the choices', () => {
    expect(() => parseRestoreMode('overwrite', false)).toThrow(ConfigError);
    expect(() => parseRestoreMode('overwrite', false)).toThrow(/"overwrite" is not a restore mode.*recreate.*append.*refuse/);
  });
});
