/**
 * The services' logger (services/core/infrastructure/log.ts): JSON lines with the event's facts
 * as fields, components, redaction of secrets, levels, and the pretty mode for terminals.
 */
import { describe, expect, it } from 'vitest';
import { createLogger, type LoggerOptions, resolveLogFormat, throttledWarn } from '../../services/core/infrastructure/log.js';
import { loadConfig } from '../../services/core/infrastructure/config.js';

/** A logger writing into an array, and the lines it wrote parsed. */
function capture(options: LoggerOptions = {}) {
  const lines: string[] = [];
  const log = createLogger('coordinator', { format: 'json', ...options, destination: { write: (line) => lines.push(line) } });
  return { log, lines, entries: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>) };
}

describe('the logger', () => {
  it('writes one JSON object per line with time, level name, component, message and fields', () => {
    const { log, lines, entries } = capture({ fields: { coordinator: 'c-1' } });
    log.info('checkpoint committed', { epoch: 7, vhost: '/', queues: 3 });
    expect(lines).toHaveLength(1);
    expect(lines[0].endsWith('\n')).toBe(true);
    expect(lines[0].slice(0, -1)).not.toContain('\n');
    const [entry] = entries();
    expect(entry).toMatchObject({ level: 'info', component: 'coordinator', coordinator: 'c-1', msg: 'checkpoint committed', epoch: 7, vhost: '/', queues: 3 });
    expect(new Date(entry.time as string).toISOString()).toBe(entry.time);
    expect(entry.pid).toBe(process.pid);
  });

  it('names a child by its path and puts its bound fields on every line', () => {
    const { log, entries } = capture({ fields: { worker: 'worker-2' } });
    const capture1 = log.child('capture', { vhost: 'v' }).child('queue', { queue: 'q' });
    capture1.warn('flush failed; will retry', { err: 'store down' });
    log.child('restore').error('restore stopped', { restoreId: 'r-1' });
    const [first, second] = entries();
    expect(first).toMatchObject({ component: 'coordinator/capture/queue', worker: 'worker-2', vhost: 'v', queue: 'q', level: 'warn', err: 'store down' });
    // One component key, not one per level of nesting (pino would repeat a key bound twice).
    expect(Object.keys(first).filter((key) => key === 'component')).toHaveLength(1);
    expect(second).toMatchObject({ component: 'coordinator/restore', restoreId: 'r-1', level: 'error' });
    expect(second).not.toHaveProperty('queue');
  });

  it('censors fields named like secrets, at the top and one object down', () => {
    const { log, lines, entries } = capture();
    log.info('connecting', {
      password: 'hunter2',
      token: 'tok-123',
      authorization: 'Bearer abc',
      secretKey: 's3-secret',
      accessKey: 's3-access',
      masterKey: 'master-1',
      target: { password: 'nested-pw', name: 'dr' },
      queue: 'orders',
    });
    const text = lines.join('');
    for (const secret of ['hunter2', 'tok-123', 'Bearer abc', 's3-secret', 's3-access', 'master-1', 'nested-pw']) expect(text).not.toContain(secret);
    expect(entries()[0]).toMatchObject({ password: '***', token: '***', authorization: '***', secretKey: '***', target: { password: '***', name: 'dr' }, queue: 'orders' });
  });

  it('takes credentials out of URLs in the message, in fields, in arrays, in errors and in bound fields', () => {
    const { log, lines, entries } = capture();
    log.child('amqp', { broker: 'amqp://bound:pw-bound@h1:5672/' }).warn('connection to amqps://alice:pw-msg@broker:5671/%2F closed', {
      url: 'redis://:pw-redis@127.0.0.1:6379/0',
      urls: ['https://bob:pw-array@s3.local:9000'],
      nested: { target: 'amqp://carol:p@ss-word@dr:5672/' },
      err: new Error('cannot connect to amqp://dave:pw-err@x:5672'),
      plain: 'amqp://nobody@host:5672/',
    });
    const text = lines.join('');
    for (const secret of ['pw-bound', 'pw-msg', 'pw-redis', 'pw-array', 'ss-word', 'pw-err']) expect(text).not.toContain(secret);
    const [entry] = entries();
    expect(entry.msg).toBe('connection to amqps://alice:***@broker:5671/%2F closed');
    expect(entry).toMatchObject({
      broker: 'amqp://bound:***@h1:5672/',
      url: 'redis://:***@127.0.0.1:6379/0',
      urls: ['https://bob:***@s3.local:9000'],
      nested: { target: 'amqp://carol:***@dr:5672/' },
      err: 'cannot connect to amqp://dave:***@x:5672',
      plain: 'amqp://nobody@host:5672/',
    });
  });

  it('writes only the levels at or above its own', () => {
    const info = capture();
    info.log.debug('hidden');
    info.log.info('shown');
    expect(info.entries().map((e) => e.msg)).toEqual(['shown']);
    const warn = capture({ level: 'warn' });
    warn.log.child('x').info('hidden');
    warn.log.warn('w');
    warn.log.error('e');
    expect(warn.entries().map((e) => e.level)).toEqual(['warn', 'error']);
    const debug = capture({ level: 'debug' });
    debug.log.debug('d', { attempt: 2 });
    expect(debug.entries()[0]).toMatchObject({ level: 'debug', attempt: 2 });
  });

  it('in pretty mode writes a readable line: time, level, component, message, then the fields', () => {
    const lines: string[] = [];
    const log = createLogger('worker', { format: 'pretty', fields: { worker: 'worker-1' }, destination: { write: (line) => lines.push(line) } });
    log.child('capture').warn('capture stopped', { vhost: 'v', queue: 'q', err: 'journal gone', password: 'hunter2' });
    expect(lines).toHaveLength(1);
    const line = lines[0];
    expect(line).toMatch(/^\[\d{2}:\d{2}:\d{2}\.\d{3}\] WARN: \[worker\/capture\] capture stopped \{.*\}\n$/);
    expect(line).toContain('"queue":"q"');
    expect(line).toContain('"err":"journal gone"');
    expect(line).toContain('"worker":"worker-1"');
    expect(line).not.toContain('hunter2');
    expect(line).not.toContain('pid');
    // Without a terminal, no colour codes.
    expect(line).not.toContain('\u001b[');
  });

  it('picks pretty for a terminal and JSON otherwise, unless told', () => {
    expect(resolveLogFormat('auto', { isTTY: true })).toBe('pretty');
    expect(resolveLogFormat('auto', { isTTY: false })).toBe('json');
    expect(resolveLogFormat('auto', {})).toBe('json');
    expect(resolveLogFormat('json', { isTTY: true })).toBe('json');
    expect(resolveLogFormat('pretty', { isTTY: false })).toBe('pretty');
  });

  it('takes TIDEMARK_LOG_FORMAT from the environment and refuses a value it does not know', () => {
    expect(loadConfig({ env: {} }).logFormat).toBe('auto');
    expect(loadConfig({ env: { TIDEMARK_LOG_FORMAT: 'json' } }).logFormat).toBe('json');
    expect(loadConfig({ env: { TIDEMARK_LOG_FORMAT: 'pretty' } }).logFormat).toBe('pretty');
    expect(() => loadConfig({ env: { TIDEMARK_LOG_FORMAT: 'xml' } })).toThrow(/logFormat \(TIDEMARK_LOG_FORMAT\).*Nothing was started/);
  });

  it('a throttled warning says how many it held back, as a field', async () => {
    const { log, entries } = capture();
    const warn = throttledWarn(log, 50);
    for (let i = 0; i < 3; i += 1) warn('Redis connection failed; reconnecting', { err: 'ECONNREFUSED' });
    expect(entries()).toHaveLength(1);
    expect(entries()[0]).toMatchObject({ msg: 'Redis connection failed; reconnecting', err: 'ECONNREFUSED' });
    expect(entries()[0]).not.toHaveProperty('suppressed');
    await new Promise((resolve) => setTimeout(resolve, 80));
    warn('Redis connection failed; reconnecting', { err: 'ECONNREFUSED' });
    expect(entries()).toHaveLength(2);
    expect(entries()[1]).toMatchObject({ err: 'ECONNREFUSED', suppressed: 2 });
  });
});
