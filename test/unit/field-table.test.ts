import { createRequire } from 'node:module';
import type { MessageProperties, Options } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { FieldTable, Properties } from '../../services/gen/tidemark/v1/store.js';
import { fromFieldTable, toFieldTable, toProperties, toPublishOptions } from '../../services/core/format/field-table.js';
import { TidemarkError } from '../../services/core/errors.js';

// amqplib's own wire codec, reached without a broker: what a publish encodes and a delivery decodes.
const require = createRequire(import.meta.url);
const codec = require('amqplib/lib/codec.js') as {
  encodeTable(buf: Buffer, val: unknown, offset: number): number;
  decodeFields(slice: Buffer): Record<string, unknown>;
};
const defs = require('amqplib/lib/defs.js') as {
  encodeProperties(id: number, channel: number, size: number, fields: unknown): Buffer;
  decode(id: number, buf: Buffer): Record<string, unknown>;
};
const args = require('amqplib/lib/api_args.js') as {
  publish(exchange: string, routingKey: string, options: Options.Publish): Record<string, unknown>;
};

/** Encode a table as amqplib would put it on the wire and decode it as amqplib would read it. */
function amqpWire(table: Record<string, unknown>): Record<string, unknown> {
  const buf = Buffer.alloc(65536);
  const len = codec.encodeTable(buf, table, 0);
  return codec.decodeFields(buf.subarray(4, len));
}

/** Publish options through amqplib's encoder and back through its delivery decoder. */
function amqpPublishDeliver(options: Options.Publish): MessageProperties {
  const frame = defs.encodeProperties(60, 0, 0, args.publish('ex', 'rk', options));
  // Frame header (7 bytes), class/weight/body size (12 bytes), then flags and fields; 0xCE ends it.
  return defs.decode(60, frame.subarray(19, frame.length - 1)) as unknown as MessageProperties;
}

/** Through our stored form, including a protobuf encode/decode. */
function viaStore(obj: Record<string, unknown>): Record<string, unknown> {
  const bytes = FieldTable.encode(toFieldTable(obj)).finish();
  return fromFieldTable(FieldTable.decode(bytes));
}

const decoded = amqpWire({
  str: 'héllo',
  empty: '',
  byte: -5,
  short: 1000,
  int: -70000,
  long: 2 ** 40,
  big: 2 ** 60,
  negBig: -(2 ** 55),
  maxSafe: Number.MAX_SAFE_INTEGER,
  dbl: 3.25,
  tiny: 1e-300,
  yes: true,
  no: false,
  nothing: null,
  bytes: Buffer.from([0, 1, 2, 255]),
  nested: { a: { b: [1, 'two', { c: null }] }, list: [] },
  arr: [1, -2.5, 'x', true, null, Buffer.from('z'), [3, [4]], { k: 'v' }],
  dec: { '!': 'decimal', value: { places: 2, digits: 12345 } },
  ts: { '!': 'timestamp', value: 1700000000 },
  f32: { '!': 'float', value: 1.5 },
  u32: { '!': 'uint32', value: 4000000000 },
  'x-death': [
    {
      count: 3,
      reason: 'rejected',
      queue: 'orders',
      time: { '!': 'timestamp', value: 1700000001 },
      exchange: '',
      'routing-keys': ['orders'],
    },
  ],
});

describe('field tables', () => {
  it('round-trips everything amqplib decodes, exactly', () => {
    const back = viaStore(decoded);
    expect(back).toStrictEqual(decoded);
    expect(Object.keys(back)).toEqual(Object.keys(decoded));
  });

  it('re-encodes to the same wire value amqplib decoded', () => {
    expect(amqpWire(viaStore(decoded))).toStrictEqual(decoded);
  });

  it('stores integers as int_value and everything else numeric as double_value', () => {
    const kinds = (v: unknown) => toFieldTable({ v }).entries[0].value?.kind;
    expect(kinds(7)).toEqual({ $case: 'intValue', value: 7 });
    expect(kinds(-(2 ** 53) + 1)).toEqual({ $case: 'intValue', value: -(2 ** 53) + 1 });
    expect(kinds(2 ** 60)).toEqual({ $case: 'doubleValue', value: 2 ** 60 });
    expect(kinds(0.5)).toEqual({ $case: 'doubleValue', value: 0.5 });
    expect(kinds(10n)).toEqual({ $case: 'intValue', value: 10 });
    expect(viaStore({ z: -0 }).z).toBe(-0);
    expect(viaStore({ n: NaN, i: -Infinity })).toStrictEqual({ n: NaN, i: -Infinity });
  });

  it('stores decimals as decimal_value and gives amqplib back its decimal object', () => {
    expect(toFieldTable({ d: { '!': 'decimal', value: { places: 3, digits: 7 } } }).entries[0].value?.kind).toEqual({
      $case: 'decimalValue',
      value: { places: 3, digits: 7 },
    });
    expect(viaStore({ d: decoded.dec })).toStrictEqual({ d: { '!': 'decimal', value: { places: 2, digits: 12345 } } });
  });

  it('keeps entry order, including a header named __proto__', () => {
    const table = JSON.parse('{"b":1,"a":2,"__proto__":{"x":1},"c":3}') as Record<string, unknown>;
    const back = viaStore(table);
    expect(Object.keys(back)).toEqual(['b', 'a', '__proto__', 'c']);
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(back, '__proto__')?.value).toEqual({ x: 1 });
  });

  it('keeps undefined distinct from null, as amqplib does when encoding', () => {
    const back = viaStore({ gone: undefined, nil: null });
    expect('gone' in back && back.gone === undefined).toBe(true);
    expect(back.nil).toBeNull();
    expect(amqpWire(back)).toStrictEqual({ nil: null });
  });

  it('copies buffers instead of keeping views of the delivery frame', () => {
    const frame = Buffer.from('abcdef');
    const table = toFieldTable({ b: frame.subarray(1, 3) });
    frame.fill(0);
    expect(fromFieldTable(table).b).toEqual(Buffer.from('bc'));
  });

  it('undefined and empty tables are an empty object', () => {
    expect(toFieldTable(undefined)).toEqual({ entries: [] });
    expect(fromFieldTable(undefined)).toEqual({});
  });

  it.each([
    ['a function', () => 1],
    ['a symbol', Symbol('s')],
    ['a Date', new Date(0)],
    ['a Map', new Map()],
    ['an unsafe bigint', 2n ** 60n],
    ['a malformed decimal', { '!': 'decimal', value: { places: 300, digits: 1 } }],
  ])('refuses %s with an error naming where it was', (_what, value) => {
    expect(() => toFieldTable({ outer: { inner: [0, value] } })).toThrow(TidemarkError);
    expect(() => toFieldTable({ outer: { inner: [0, value] } })).toThrow(/table\.outer\.inner\[1\]/);
  });

  it('refuses a stored value with no kind', () => {
    expect(() => fromFieldTable({ entries: [{ key: 'k', value: { kind: undefined } }] })).toThrow(/table\.k.*no kind/);
  });
});

describe('properties', () => {
  const publish: Options.Publish = {
    contentType: 'application/json',
    contentEncoding: 'gzip',
    deliveryMode: 2,
    priority: 7,
    correlationId: 'corr-1',
    replyTo: 'replies',
    expiration: '60000',
    messageId: 'm-1',
    timestamp: 1700000000,
    type: 'order.created',
    userId: 'guest',
    appId: 'shop',
    headers: { tenant: 'acme', attempt: 2, trace: { span: Buffer.from([1, 2]) }, rate: 0.25 },
  };

  it('round-trip through the store and amqplib reproduce every property and header', () => {
    const delivered = amqpPublishDeliver(publish);
    const stored = Properties.decode(Properties.encode(toProperties(delivered)).finish());
    const republished = amqpPublishDeliver(toPublishOptions(stored));
    expect(republished).toStrictEqual(delivered);
  });

  it('leaves absent properties unset', () => {
    const delivered = amqpPublishDeliver({});
    const stored = toProperties(delivered);
    expect(stored).toEqual({ headers: { entries: [] } });
    expect(Properties.decode(Properties.encode(stored).finish())).toEqual({ headers: { entries: [] } });
    expect(toPublishOptions(stored)).toEqual({ headers: {} });
    expect(toPublishOptions({ headers: undefined })).toEqual({});
  });

  it('drops broker-added headers when asked', () => {
    const delivered = amqpPublishDeliver({ headers: { keep: 1, 'x-stream-offset': 42 } });
    const stored = toProperties(delivered, { dropHeaders: ['x-stream-offset'] });
    expect(fromFieldTable(stored.headers)).toEqual({ keep: 1 });
  });

  it('lays extra headers over stored ones and can omit user-id and chosen headers', () => {
    const stored = toProperties(amqpPublishDeliver(publish));
    const opts = toPublishOptions(stored, { tenant: 'restored', 'x-origin': 'q' }, { omitUserId: true, dropHeaders: ['attempt'] });
    expect(opts.userId).toBeUndefined();
    expect(opts.headers).toEqual({ tenant: 'restored', trace: { span: Buffer.from([1, 2]) }, rate: 0.25, 'x-origin': 'q' });
  });

  it('refuses a timestamp the store cannot hold exactly', () => {
    const delivered = { ...amqpPublishDeliver({}), timestamp: 2 ** 60 };
    expect(() => toProperties(delivered)).toThrow(/properties\.timestamp/);
  });
});
