/**
 * A fault-injecting TCP proxy for chaos runs: it forwards every connection from its own port to a
 * target, and on demand cuts the link (a network partition), heals it, or delays every byte.
 *
 * A cut has two parts:
 * - new connections: 'reset' accepts and resets them at once (the caller sees ECONNRESET, as with
 *   a refused connection); 'blackhole' accepts them and never answers (the caller waits for its
 *   own deadline, as behind a dropped route);
 * - live connections: 'destroy' resets them; 'freeze' keeps them open but drops every byte in both
 *   directions and hides closes, so neither end learns anything until its own timeouts fire.
 *
 * Healing lets new connections through again. Frozen and black-holed connections are reset when
 * the link heals: bytes were dropped mid-stream, so they cannot carry on.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export type CutMode = 'reset' | 'blackhole';

export interface CutOptions {
  /** What new connections meet during the cut. @default 'reset' */
  mode?: CutMode;
  /** What happens to connections open when the cut starts. @default 'destroy' */
  live?: 'destroy' | 'freeze';
}

export interface ProxyTarget {
  host: string;
  port: number;
}

export interface FaultProxyOptions {
  /** Where connections are forwarded. */
  target: ProxyTarget;
  /** Port to listen on; 0 lets the OS pick one. @default 0 */
  port?: number;
  /** Address to listen on. @default 127.0.0.1 */
  host?: string;
}

/** What the proxy did since it started. */
export interface ProxyStats {
  /** Connections forwarded to the target. */
  forwarded: number;
  /** Connections reset on arrival during a 'reset' cut. */
  refused: number;
  /** Connections held without an answer during a 'blackhole' cut. */
  blackholed: number;
  /** Live connections reset by a cut, or reset by a heal after being frozen. */
  severed: number;
}

/** Bytes waiting to be written one way, each released at its own time (latency). */
class Direction {
  private readonly queue: Array<{ at: number; chunk: Buffer | null }> = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly from: Socket,
    private readonly to: Socket,
  ) {}

  /** Queues a chunk (or, for null, the end of the stream) `delayMs` from now, never before earlier ones. */
  push(chunk: Buffer | null, delayMs: number): void {
    const last = this.queue.length > 0 ? this.queue[this.queue.length - 1].at : 0;
    const at = Math.max(Date.now() + delayMs, last);
    if (this.queue.length === 0 && delayMs <= 0) return this.write(chunk);
    this.queue.push({ at, chunk });
    this.schedule();
  }

  /** Drops everything queued (a frozen link loses its bytes). */
  clear(): void {
    this.queue.length = 0;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.timer || this.queue.length === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const now = Date.now();
      while (this.queue.length > 0 && this.queue[0].at <= now) this.write(this.queue.shift()!.chunk);
      this.schedule();
    }, Math.max(0, this.queue[0].at - Date.now()));
  }

  private write(chunk: Buffer | null): void {
    if (this.to.destroyed) return;
    if (chunk === null) {
      this.to.end();
      return;
    }
    // Backpressure: stop reading the sender while the receiver's buffer is full.
    if (!this.to.write(chunk) && !this.from.isPaused()) {
      this.from.pause();
      this.to.once('drain', () => this.from.resume());
    }
  }
}

/** One proxied connection: the client's socket and ours to the target. */
class Link {
  frozen = false;
  private readonly up: Direction;
  private readonly down: Direction;

  constructor(
    readonly client: Socket,
    readonly upstream: Socket,
    private readonly latencyMs: () => number,
    private readonly onClose: (link: Link) => void,
  ) {
    this.up = new Direction(client, upstream);
    this.down = new Direction(upstream, client);
    const wire = (from: Socket, to: Socket, direction: Direction) => {
      from.on('data', (chunk: Buffer) => {
        if (!this.frozen) direction.push(chunk, this.latencyMs());
      });
      // A half-close travels like data, after what was sent before it.
      from.on('end', () => {
        if (!this.frozen) direction.push(null, this.latencyMs());
      });
      from.on('error', () => {});
      from.on('close', () => {
        // While frozen the other end must not learn that this one went away: the link stays
        // listed so that healing resets the end still open.
        if (this.frozen && !to.destroyed) return;
        to.destroy();
        this.onClose(this);
      });
    };
    wire(client, upstream, this.up);
    wire(upstream, client, this.down);
  }

  freeze(): void {
    this.frozen = true;
    this.up.clear();
    this.down.clear();
  }

  reset(): void {
    this.up.clear();
    this.down.clear();
    resetSocket(this.client);
    resetSocket(this.upstream);
  }
}

function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  // A TCP RST rather than a FIN: the peer sees the connection die, not end cleanly.
  if (typeof socket.resetAndDestroy === 'function' && socket.readyState !== 'opening') socket.resetAndDestroy();
  else socket.destroy();
}

export class FaultProxy {
  private target: ProxyTarget;
  private cutOptions: Required<CutOptions> | undefined;
  private latency = 0;
  private readonly links = new Set<Link>();
  /** Connections accepted during a 'blackhole' cut, held without an answer. */
  private readonly held = new Set<Socket>();
  readonly stats: ProxyStats = { forwarded: 0, refused: 0, blackholed: 0, severed: 0 };

  private constructor(
    private readonly server: Server,
    readonly host: string,
    readonly port: number,
    target: ProxyTarget,
  ) {
    this.target = target;
  }

  /** Starts listening; resolves once the port is bound. */
  static async start(options: FaultProxyOptions): Promise<FaultProxy> {
    const host = options.host ?? '127.0.0.1';
    let proxy: FaultProxy | undefined;
    const server = createServer({ pauseOnConnect: false }, (socket) => proxy?.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    proxy = new FaultProxy(server, host, port, options.target);
    return proxy;
  }

  /** host:port to connect to instead of the target. */
  get address(): string {
    return `${this.host}:${this.port}`;
  }

  /** Whether a cut is in force. */
  get isCut(): boolean {
    return this.cutOptions !== undefined;
  }

  /** Connections forwarded right now (frozen ones included). */
  get liveConnections(): number {
    return this.links.size;
  }

  /** Forwards new connections somewhere else from now on (a restarted server on a new port). */
  setTarget(target: ProxyTarget): void {
    this.target = target;
  }

  /** Delays every chunk by this many milliseconds in each direction; 0 turns it off. */
  setLatency(ms: number): void {
    this.latency = Math.max(0, ms);
  }

  /** Partitions the link: see the module comment for the modes. */
  cut(options: CutOptions = {}): void {
    this.cutOptions = { mode: options.mode ?? 'reset', live: options.live ?? 'destroy' };
    for (const link of [...this.links]) {
      if (this.cutOptions.live === 'freeze') {
        link.freeze();
      } else {
        this.stats.severed += 1;
        this.links.delete(link);
        link.reset();
      }
    }
  }

  /** Ends the cut: new connections are forwarded again; frozen and held ones are reset. */
  heal(): void {
    this.cutOptions = undefined;
    for (const link of [...this.links]) {
      if (!link.frozen) continue;
      this.stats.severed += 1;
      this.links.delete(link);
      link.reset();
    }
    for (const socket of this.held) resetSocket(socket);
    this.held.clear();
  }

  /** Stops listening and resets every connection. */
  async close(): Promise<void> {
    this.heal();
    for (const link of this.links) link.reset();
    this.links.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    client.on('error', () => {});
    const cut = this.cutOptions;
    if (cut?.mode === 'reset') {
      this.stats.refused += 1;
      resetSocket(client);
      return;
    }
    if (cut?.mode === 'blackhole') {
      this.stats.blackholed += 1;
      this.held.add(client);
      client.on('data', () => {});
      client.on('close', () => this.held.delete(client));
      return;
    }
    this.stats.forwarded += 1;
    const upstream = connect({ host: this.target.host, port: this.target.port });
    const link = new Link(client, upstream, () => this.latency, (l) => this.links.delete(l));
    this.links.add(link);
  }
}
