/**
 * The chaos runs' fault-injecting TCP proxy, against an echo server on the loopback interface:
 * it forwards, a cut resets or black-holes connections, healing lets them through again, and
 * latency delays bytes without reordering them.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FaultProxy } from '../chaos/proxy.js';
import { eventually } from '../helpers/eventually.js';

let echo: Server;
let echoPort: number;
let proxy: FaultProxy;
const sockets: Socket[] = [];
/** The echo server's side of each connection. */
const served = new Set<Socket>();

beforeEach(async () => {
  echo = createServer((socket) => {
    served.add(socket);
    socket.on('close', () => served.delete(socket));
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  echoPort = (echo.address() as { port: number }).port;
  proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port: echoPort } });
});

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await proxy.close();
  for (const s of served) s.destroy();
  await new Promise<void>((resolve) => echo.close(() => resolve()));
});

/** A client connection to the proxy that collects what comes back and how it ended. */
function client(): { socket: Socket; received: () => string; ended: Promise<'closed' | 'error'>; connected: Promise<void> } {
  const socket = connect({ host: '127.0.0.1', port: proxy.port });
  sockets.push(socket);
  let data = '';
  socket.on('data', (chunk) => (data += chunk.toString()));
  const ended = new Promise<'closed' | 'error'>((resolve) => {
    socket.once('error', () => resolve('error'));
    socket.once('close', () => resolve('closed'));
  });
  const connected = new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  return { socket, received: () => data, ended, connected };
}

/** True once `predicate` holds, false if it does not within `timeoutMs`. */
const until = (predicate: () => boolean, timeoutMs = 2_000): Promise<boolean> =>
  eventually('the proxy to pass the data on', predicate, { timeoutMs, intervalMs: 10 }).catch(() => predicate());

const settled = (p: Promise<unknown>, ms: number) => Promise.race([p.then(() => true), new Promise((r) => setTimeout(() => r(false), ms))]);

describe('FaultProxy', () => {
  it('forwards bytes both ways', async () => {
    const c = client();
    c.socket.write('hello');
    expect(await until(() => c.received() === 'hello')).toBe(true);
    expect(proxy.stats.forwarded).toBe(1);
  });

  it('in reset mode, kills live connections and resets new ones until healed', async () => {
    const live = client();
    live.socket.write('a');
    await until(() => live.received() === 'a');
    proxy.cut({ mode: 'reset' });
    expect(await settled(live.ended, 1_000)).toBe(true);

    const refused = client();
    refused.socket.write('b');
    expect(await settled(refused.ended, 1_000)).toBe(true);
    expect(refused.received()).toBe('');
    expect(proxy.stats.refused).toBe(1);

    proxy.heal();
    const after = client();
    after.socket.write('c');
    expect(await until(() => after.received() === 'c')).toBe(true);
  });

  it('in blackhole mode with frozen live connections, answers nothing and closes nothing until healed', async () => {
    const live = client();
    live.socket.write('a');
    await until(() => live.received() === 'a');
    proxy.cut({ mode: 'blackhole', live: 'freeze' });

    live.socket.write('lost');
    const held = client();
    await held.connected;
    held.socket.write('also lost');
    // Neither connection hears back or sees a close: the caller can only time out.
    expect(await settled(live.ended, 300)).toBe(false);
    expect(await settled(held.ended, 300)).toBe(false);
    expect(live.received()).toBe('a');
    expect(held.received()).toBe('');
    expect(proxy.stats.blackholed).toBe(1);

    // Bytes were dropped mid-stream: healing resets these connections; new ones go through.
    proxy.heal();
    expect(await settled(live.ended, 1_000)).toBe(true);
    expect(await settled(held.ended, 1_000)).toBe(true);
    const after = client();
    after.socket.write('d');
    expect(await until(() => after.received() === 'd')).toBe(true);
  });

  it('hides the close of the far end while frozen', async () => {
    const live = client();
    live.socket.write('a');
    await until(() => live.received() === 'a');
    proxy.cut({ mode: 'blackhole', live: 'freeze' });
    for (const s of served) s.destroy();
    expect(await settled(live.ended, 300)).toBe(false);
    proxy.heal();
    expect(await settled(live.ended, 1_000)).toBe(true);
  });

  it('delays each direction by the latency and keeps the byte order', async () => {
    proxy.setLatency(100);
    const c = client();
    await c.connected;
    const start = Date.now();
    const expected = Array.from({ length: 50 }, (_, i) => `<${i}>`).join('');
    for (let i = 0; i < 50; i += 1) c.socket.write(`<${i}>`);
    expect(await until(() => c.received() === expected, 3_000)).toBe(true);
    // Once there, once back.
    expect(Date.now() - start).toBeGreaterThanOrEqual(190);
  });

  it('forwards new connections to a new target', async () => {
    const other = createServer((socket) => {
      socket.on('error', () => {});
      socket.end('other');
    });
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    try {
      proxy.setTarget({ host: '127.0.0.1', port: (other.address() as { port: number }).port });
      const c = client();
      expect(await until(() => c.received() === 'other')).toBe(true);
    } finally {
      await new Promise<void>((resolve) => other.close(() => resolve()));
    }
  });

  it('closes the client when the target refuses', async () => {
    proxy.setTarget({ host: '127.0.0.1', port: 1 });
    const c = client();
    expect(await settled(c.ended, 1_000)).toBe(true);
  });
});
