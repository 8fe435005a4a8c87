import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { endsLikeDigest, utf8Prefix } from '../../services/core/format/bounded-name.js';
import { TidemarkError } from '../../services/core/errors.js';
import { journalName, journalNameBudget, streamDirectoryLength } from '../../services/core/format/names.js';
import { MAX_KEY_BYTES, MAX_KEY_PART_BYTES, encodeKeyPart, fenceRangeKey, partitionKey, segmentKey } from '../../services/core/store/keys.js';
import { EDGE_NAMES, Random, legalName, legalNames, nameLength } from '../helpers/legal-names.js';

const NS = 'tidemark';
const SHA = 'ab'.repeat(32);
const bytes = (s: string) => Buffer.byteLength(s);
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** journalName before it knew the vhost. */
function journalNameBefore(namespace: string, queue: string): string {
  const name = `${namespace}.journal.${queue}`;
  return bytes(name) <= 255 ? name : `${namespace}.journal.~${sha256(queue)}`;
}

/** encodeKeyPart before it had a length limit. */
function encodeKeyPartBefore(name: string): string {
  if (name === '.') return '%2E';
  if (name === '..') return '%2E%2E';
  return encodeURIComponent(name);
}

/** Whether a stream of this name starts in this vhost (the directory rule measured on RabbitMQ 3.10.8). */
const streamStarts = (vhost: string, name: string) => bytes(name) <= 255 && streamDirectoryLength(vhost, name) <= 255;

const SEED = Number(process.env.TIDEMARK_TEST_SEED ?? 20261206);

describe('utf8Prefix', () => {
  it('cuts between characters, never inside one', () => {
    expect(utf8Prefix('abc', 5)).toBe('abc');
    expect(utf8Prefix('中文字', 7)).toBe('中文');
    expect(utf8Prefix('a😀b', 4)).toBe('a');
    expect(utf8Prefix('a😀b', 5)).toBe('a😀');
    expect(utf8Prefix('😀', 0)).toBe('');
  });
});

describe('streamDirectoryLength', () => {
  it('counts <vhost>_<name>_<19-digit timestamp>, one byte per byte except CR and LF', () => {
    expect(streamDirectoryLength('tm-measure-v1', 'q.a b/c%é中😀')).toBe('tm-measure-v1_q_a_b_c___________1796537255015225805'.length);
    expect(streamDirectoryLength('tm-m6', 'a\rb\nc\r\nd')).toBe('tm-m6_abcd_1796537404778375259'.length);
    expect(streamDirectoryLength('/', 'q')).toBe('__q_'.length + 19);
  });

  it('leaves 234 bytes for vhost and name together', () => {
    expect(journalNameBudget('tm-measure-v2')).toBe(221);
    expect(journalNameBudget('/')).toBe(233);
    expect(journalNameBudget('')).toBe(234);
    expect(journalNameBudget('v'.repeat(250))).toBeLessThan(0);
  });
});

describe('journalName', () => {
  it('keeps the readable name wherever the stream starts', () => {
    expect(journalName(NS, '/', 'orders.eu')).toBe('tidemark.journal.orders.eu');
    const longest = 'q'.repeat(233 - bytes('tidemark.journal.'));
    expect(journalName(NS, '/', longest)).toBe(`tidemark.journal.${longest}`);
    expect(streamDirectoryLength('/', journalName(NS, '/', longest))).toBe(255);
  });

  it('gives a digest form with a readable prefix where the stream directory would be too long', () => {
    const queue = 'q'.repeat(234 - bytes('tidemark.journal.'));
    const journal = journalName(NS, '/', queue);
    expect(journal).toMatch(/^tidemark\.journal\.q+~[0-9a-f]{64}$/);
    expect(journal.endsWith(`~${sha256(queue)}`)).toBe(true);
    expect(bytes(journal)).toBe(233);
  });

  it('keeps the journal a name longer than 255 bytes always had', () => {
    const queue = '中'.repeat(85);
    expect(journalName(NS, '/', queue)).toBe(`tidemark.journal.~${sha256(queue)}`);
    expect(journalName(NS, 'prod', queue)).toBe(journalNameBefore(NS, queue));
  });

  it('cuts a non-ASCII prefix between characters', () => {
    const queue = 'ع'.repeat(110);
    const journal = journalName(NS, '/', queue);
    expect(Buffer.from(journal).toString('utf8')).toBe(journal);
    expect(journal).toMatch(/^tidemark\.journal\.(ع)+~[0-9a-f]{64}$/);
    expect(bytes(journal)).toBeLessThanOrEqual(journalNameBudget('/'));
  });

  it('shortens the digest in a vhost with a long name, and refuses where nothing fits', () => {
    const vhost = 'v'.repeat(160);
    const journal = journalName(NS, vhost, 'q'.repeat(200));
    expect(journal).toMatch(/^tidemark\.journal\.q*~[0-9a-f]{32}$/);
    expect(streamDirectoryLength(vhost, journal)).toBeLessThanOrEqual(255);
    expect(journalName(NS, 'v'.repeat(210), 'short')).toBe('tidemark.journal.short');
    expect(() => journalName(NS, 'v'.repeat(200), 'q'.repeat(200))).toThrow(TidemarkError);
  });

  it('never lets a readable name equal a digest form', () => {
    const long = 'x'.repeat(300);
    const impostor = `~${sha256(long)}`;
    expect(journalName(NS, '/', impostor)).not.toBe(journalName(NS, '/', long));
    expect(endsLikeDigest(journalName(NS, '/', impostor))).toBe(true);
  });

  it('fits, stays stable, stays distinct and maps as before where that worked, across generated names', () => {
    const random = new Random(SEED);
    const vhosts = ['/', ...EDGE_NAMES, ...Array.from({ length: 30 }, () => legalName(random, Math.min(nameLength(random), 220)))];
    const queues = [...EDGE_NAMES, ...legalNames(random, 300), 'x'.repeat(255), '中'.repeat(85)];
    for (const vhost of vhosts) {
      const journals = new Map<string, string>();
      for (const queue of queues) {
        let journal: string;
        try {
          journal = journalName(NS, vhost, queue);
        } catch (err) {
          expect(err).toBeInstanceOf(TidemarkError);
          expect(journalNameBudget(vhost)).toBeLessThan(bytes(`${NS}.journal.~`) + 32);
          continue;
        }
        expect(streamStarts(vhost, journal), `${JSON.stringify(vhost)} ${JSON.stringify(queue)}`).toBe(true);
        expect(journalName(NS, vhost, queue)).toBe(journal);
        expect(journals.get(journal) ?? queue).toBe(queue);
        journals.set(journal, queue);
        const before = journalNameBefore(NS, queue);
        if (streamStarts(vhost, before) && !endsLikeDigest(queue)) expect(journal).toBe(before);
      }
    }
  });
});

describe('store key parts', () => {
  it('encode short names exactly as before', () => {
    for (const name of ['/', 'orders.eu', 'a b/c?d', '.', '..', '%2F', '中文', '😀', 'x'.repeat(255)]) {
      expect(encodeKeyPart(name)).toBe(encodeKeyPartBefore(name));
    }
    expect(segmentKey('/', 'orders.eu', 0, 1234, SHA)).toBe(`segments/%2F/orders.eu/00000000000000000000-00000000000000001234-${SHA.slice(0, 16)}.seg`);
    expect(partitionKey(7, 'worker/1')).toBe('staging/00000000000000000007/worker%2F1.partition');
  });

  it('take a digest form past 255 bytes: whole encoded characters, ~, sha256 of the name', () => {
    const name = 'ع'.repeat(110);
    const part = encodeKeyPart(name);
    expect(encodeKeyPartBefore(name).length).toBe(660);
    expect(part.length).toBeLessThanOrEqual(MAX_KEY_PART_BYTES);
    expect(part).toMatch(/^(%D8%B9)+~[0-9a-f]{64}$/);
    expect(part.endsWith(`~${sha256(name)}`)).toBe(true);
    expect(encodeKeyPart(`~${sha256('x')}`)).not.toBe(`~${sha256('x')}`);
  });

  it('keep every part within a file name and every key within MAX_KEY_BYTES (S3: 1,024)', () => {
    expect(MAX_KEY_BYTES).toBeLessThanOrEqual(1024);
    const random = new Random(SEED + 1);
    const names = [...EDGE_NAMES, ...legalNames(random, 400), 'x'.repeat(255), '😀'.repeat(63)];
    const parts = new Map<string, string>();
    for (const name of names) {
      const part = encodeKeyPart(name);
      expect(part.length).toBeLessThanOrEqual(MAX_KEY_PART_BYTES);
      expect(part).toMatch(/^[A-Za-z0-9\-_.!~*'()%]+$/);
      expect(['.', '..']).not.toContain(part);
      expect(encodeKeyPart(name)).toBe(part);
      expect(parts.get(part) ?? name).toBe(name);
      parts.set(part, name);
      if (encodeKeyPartBefore(name).length <= MAX_KEY_PART_BYTES && !endsLikeDigest(encodeKeyPartBefore(name))) expect(part).toBe(encodeKeyPartBefore(name));
      const keys = [segmentKey(name, name, 2 ** 53 - 1, 2 ** 53 - 1, SHA), fenceRangeKey(name, name, 0, 2 ** 53 - 1), partitionKey(2 ** 53 - 1, name)];
      for (const key of keys) {
        expect(bytes(key)).toBeLessThanOrEqual(MAX_KEY_BYTES);
        for (const segment of key.split('/')) expect(bytes(segment)).toBeLessThanOrEqual(255);
      }
    }
  });
});
