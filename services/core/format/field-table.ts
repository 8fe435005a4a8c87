/**
 * Conversions between what amqplib decodes and accepts (plain JS values) and the store's
 * FieldTable / Properties messages. Capture stores what amqplib decoded; restore hands amqplib
 * back a value equal to it, so a restored message carries the same properties and headers (G2).
 *
 * What amqplib decodes, and how each kind is stored:
 * - strings → string_value; booleans → bool_value; Buffers → bytes_value.
 * - numbers: safe integers → int_value; anything else (fractions, -0, NaN, ±Infinity, integers
 *   beyond 2^53) → double_value. amqplib reads every integer width (and float/double) into a JS
 *   number, so the number is all there is to keep; a double above 2^53 is always an integer, so
 *   storing it as a double is exact.
 * - null → void_value true.
 * - plain objects → table_value, arrays → array_value, recursively.
 * - `{ '!': 'decimal', value: { places, digits } }` → decimal_value.
 * - `{ '!': 'timestamp', value: n }` (amqplib's decoding of AMQP timestamps, e.g. `x-death[].time`)
 *   has no kind of its own in format version 1: it is stored as the table it is. amqplib treats any
 *   object with a `'!'` key as a typed value when encoding, so handing the same object back makes
 *   amqplib write a timestamp again. Other `'!'`-typed values a caller builds work the same way.
 *
 * Values amqplib never decodes but callers may pass: `undefined` → void_value false (read back as
 * undefined, which amqplib leaves out of a table, as it would have left out the original); bigint
 * within the safe integer range → int_value (read back as a number); Uint8Array → bytes_value
 * (read back as a Buffer). Anything else (functions, symbols, class instances such as Date or Map,
 * unsafe bigints) throws: nothing is dropped silently.
 */
import type { MessageProperties, Options } from 'amqplib';
import type { FieldTable, FieldValue, Properties } from '../../gen/tidemark/v1/store.js';
import { FormatError } from '../errors.js';

/** An amqplib decimal: `places` decimal places of the unsigned integer `digits`. */
export interface AmqpDecimal {
  '!': 'decimal';
  value: { places: number; digits: number };
}

/** Convert an amqplib table (headers, arguments) to its stored form; undefined → empty table. */
export function toFieldTable(obj: Record<string, unknown> | undefined): FieldTable {
  return tableOf(obj ?? {}, 'table');
}

/** Convert a stored table back to the plain object amqplib accepts; undefined → `{}`. */
export function fromFieldTable(t: FieldTable | undefined): Record<string, unknown> {
  return objectOf(t ?? { entries: [] }, 'table');
}

/** Convert one value, as amqplib decodes it, to its stored form. */
export function toFieldValue(value: unknown, path = 'value'): FieldValue {
  switch (typeof value) {
    case 'string':
      return { kind: { $case: 'stringValue', value } };
    case 'boolean':
      return { kind: { $case: 'boolValue', value } };
    case 'number':
      // -0 is an integer to Number.isSafeInteger but not to a round trip through int_value.
      if (Number.isSafeInteger(value) && !Object.is(value, -0)) return { kind: { $case: 'intValue', value } };
      return { kind: { $case: 'doubleValue', value } };
    case 'bigint':
      if (value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)) {
        return { kind: { $case: 'intValue', value: Number(value) } };
      }
      throw unsupported(path, `bigint ${value} is outside the safe integer range (±2^53) the store keeps`);
    case 'undefined':
      return { kind: { $case: 'voidValue', value: false } };
    case 'object':
      return objectValue(value, path);
    default:
      throw unsupported(path, `a ${typeof value} cannot be stored in an AMQP table`);
  }
}

/** Convert one stored value back to what amqplib accepts. */
export function fromFieldValue(v: FieldValue | undefined, path = 'value'): unknown {
  const kind = v?.kind;
  if (kind === undefined) {
    throw new FormatError(`${path}: stored field value has no kind; the table cannot be read back`);
  }
  switch (kind.$case) {
    case 'stringValue':
    case 'intValue':
    case 'doubleValue':
    case 'boolValue':
      return kind.value;
    case 'bytesValue':
      return Buffer.from(kind.value);
    case 'voidValue':
      return kind.value ? null : undefined;
    case 'decimalValue': {
      const decimal: AmqpDecimal = { '!': 'decimal', value: { places: kind.value.places, digits: kind.value.digits } };
      return decimal;
    }
    case 'tableValue':
      return objectOf(kind.value, path);
    case 'arrayValue':
      return kind.value.values.map((item, i) => fromFieldValue(item, `${path}[${i}]`));
    default: {
      const never: never = kind;
      throw new FormatError(`${path}: unknown stored field value kind ${JSON.stringify(never)}`);
    }
  }
}

/** Options for {@link toProperties}. */
export interface ToPropertiesOptions {
  /** Header names to leave out, e.g. headers the broker adds on delivery (`x-stream-offset`). @default [] */
  dropHeaders?: string[];
}

/**
 * Convert the properties amqplib decoded for a delivered message to their stored form. A property
 * amqplib left undefined was absent on the wire and stays unset.
 */
export function toProperties(props: MessageProperties, options: ToPropertiesOptions = {}): Properties {
  const out: Properties = { headers: undefined };
  const set = <K extends keyof Properties>(key: K, value: Properties[K]): void => {
    if (value !== undefined) out[key] = value;
  };
  set('contentType', stringProp(props, 'contentType'));
  set('contentEncoding', stringProp(props, 'contentEncoding'));
  set('deliveryMode', octetProp(props, 'deliveryMode'));
  set('priority', octetProp(props, 'priority'));
  set('correlationId', stringProp(props, 'correlationId'));
  set('replyTo', stringProp(props, 'replyTo'));
  set('expiration', stringProp(props, 'expiration'));
  set('messageId', stringProp(props, 'messageId'));
  set('timestamp', timestampProp(props));
  set('type', stringProp(props, 'type'));
  set('userId', stringProp(props, 'userId'));
  set('appId', stringProp(props, 'appId'));
  set('clusterId', stringProp(props, 'clusterId'));
  const headers: unknown = props.headers;
  if (headers !== undefined && headers !== null) {
    if (!isPlainObject(headers)) throw unsupported('properties.headers', 'headers must be a plain object');
    const drop = new Set(options.dropHeaders ?? []);
    const kept = Object.keys(headers).filter((k) => !drop.has(k));
    out.headers = { entries: kept.map((key) => ({ key, value: toFieldValue(headers[key], `headers.${key}`) })) };
  }
  return out;
}

/** Options for {@link toPublishOptions}. */
export interface ToPublishOptions {
  /** Stored header names not to publish (e.g. `CC`/`BCC`, which RabbitMQ routes on). @default [] */
  dropHeaders?: string[];
  /**
   * Leave out `userId`. RabbitMQ closes the channel when a message's user-id differs from the
   * connection's user, so a restore through another user must drop it (or carry it in a header).
   * @default false
   */
  omitUserId?: boolean;
}

/**
 * Build amqplib publish options from stored properties: only properties that were present are
 * set; headers are the stored headers with `extraHeaders` laid over them.
 *
 * `clusterId` cannot be restored through amqplib: its publish path always sends it unset.
 */
export function toPublishOptions(
  p: Properties,
  extraHeaders?: Record<string, unknown>,
  options: ToPublishOptions = {},
): Options.Publish {
  const out: Options.Publish = {};
  if (p.contentType !== undefined) out.contentType = p.contentType;
  if (p.contentEncoding !== undefined) out.contentEncoding = p.contentEncoding;
  if (p.deliveryMode !== undefined) out.deliveryMode = p.deliveryMode;
  if (p.priority !== undefined) out.priority = p.priority;
  if (p.correlationId !== undefined) out.correlationId = p.correlationId;
  if (p.replyTo !== undefined) out.replyTo = p.replyTo;
  if (p.expiration !== undefined) out.expiration = p.expiration;
  if (p.messageId !== undefined) out.messageId = p.messageId;
  if (p.timestamp !== undefined) out.timestamp = p.timestamp;
  if (p.type !== undefined) out.type = p.type;
  if (p.userId !== undefined && !options.omitUserId) out.userId = p.userId;
  if (p.appId !== undefined) out.appId = p.appId;
  if (p.headers !== undefined || extraHeaders !== undefined) {
    const headers = fromFieldTable(p.headers);
    for (const key of options.dropHeaders ?? []) delete headers[key];
    for (const [key, value] of Object.entries(extraHeaders ?? {})) setOwn(headers, key, value);
    out.headers = headers;
  }
  return out;
}

function objectValue(value: object | null, path: string): FieldValue {
  if (value === null) return { kind: { $case: 'voidValue', value: true } };
  if (Buffer.isBuffer(value)) return { kind: { $case: 'bytesValue', value: Buffer.from(value) } };
  if (value instanceof Uint8Array) return { kind: { $case: 'bytesValue', value: Buffer.from(value) } };
  if (Array.isArray(value)) {
    return { kind: { $case: 'arrayValue', value: { values: value.map((item, i) => toFieldValue(item, `${path}[${i}]`)) } } };
  }
  if (!isPlainObject(value)) {
    const what = (value as object).constructor?.name ?? 'object';
    throw unsupported(path, `a ${what} cannot be stored in an AMQP table (only plain objects, arrays and Buffers)`);
  }
  if (value['!'] === 'decimal') return { kind: { $case: 'decimalValue', value: decimalOf(value, path) } };
  return { kind: { $case: 'tableValue', value: tableOf(value, path) } };
}

function tableOf(obj: Record<string, unknown>, path: string): FieldTable {
  if (!isPlainObject(obj)) throw unsupported(path, 'a table must be a plain object');
  return { entries: Object.keys(obj).map((key) => ({ key, value: toFieldValue(obj[key], `${path}.${key}`) })) };
}

function objectOf(t: FieldTable, path: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const entry of t.entries) setOwn(out, entry.key, fromFieldValue(entry.value, `${path}.${entry.key}`));
  return out;
}

function decimalOf(value: Record<string, unknown>, path: string): { places: number; digits: number } {
  const inner = value.value as { places?: unknown; digits?: unknown } | undefined;
  const places = inner?.places;
  const digits = inner?.digits;
  const ok =
    Object.keys(value).length === 2 &&
    typeof places === 'number' &&
    Number.isInteger(places) &&
    places >= 0 &&
    places <= 255 &&
    typeof digits === 'number' &&
    Number.isSafeInteger(digits);
  if (!ok) {
    throw unsupported(path, `decimal must be { '!': 'decimal', value: { places: 0..255, digits: integer } }, got ${describe(value)}`);
  }
  return { places, digits };
}

/** Set a key as an own property, so a header named `__proto__` stays a header. */
function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function stringProp(props: MessageProperties, name: keyof MessageProperties): string | undefined {
  const v: unknown = props[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw unsupported(`properties.${name}`, `expected a string, got ${describe(v)}`);
  return v;
}

function octetProp(props: MessageProperties, name: 'deliveryMode' | 'priority'): number | undefined {
  const v: unknown = props[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 255) {
    throw unsupported(`properties.${name}`, `expected an integer 0..255, got ${describe(v)}`);
  }
  return v;
}

function timestampProp(props: MessageProperties): number | undefined {
  const v: unknown = props.timestamp;
  if (v === undefined || v === null) return undefined;
  // amqplib reads the 64-bit timestamp into a number; the store keeps int64 as a safe integer.
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw unsupported('properties.timestamp', `expected a non-negative integer below 2^53, got ${describe(v)}`);
  }
  return v;
}

function describe(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x)) ?? String(v);
  } catch {
    return String(v);
  }
}

function unsupported(path: string, what: string): FormatError {
  return new FormatError(`cannot store ${path}: ${what}`);
}
