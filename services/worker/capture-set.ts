/**
 * The queues a worker captures: applies assignments from the leader and keeps one channel per
 * queue. A vhost's channels are spread over a pool of connections ("lanes", lane-slots.ts) of at
 * most `channelsPerConnection` channels each, so no connection reaches RabbitMQ's channel_max;
 * when one lane's connection drops, only that lane's captures are re-attached.
 */
import type { Channel, ChannelModel } from 'amqplib';
import type { QueueAssignment } from '../gen/tidemark/v1/worker.js';
import { captureCodec, errorMessage, forEachLimited, type Logger, queueKey, type SegmentCodecChoice } from '../core/index.js';
import { VhostConnections } from '../core/amqp/index.js';
import type { ObjectStore } from '../core/store/index.js';
import { LaneSlots } from './lane-slots.js';
import { QueueCapture, type SegmentUploadObserver } from './queue-capture.js';
import { probeJournalTail } from './journal-tail.js';
import { JournalReadError } from './errors.js';

export interface CaptureSetOptions {
  namespace: string;
  amqpUrl: string;
  store: ObjectStore;
  log: Logger;
  segmentBytes: number;
  /** How segments are compressed (config segmentCodec). */
  segmentCodec: SegmentCodecChoice;
  prefetch: number;
  clientName: string;
  /** Most capture channels on one AMQP connection; a vhost opens as many connections as it needs. */
  channelsPerConnection: number;
  /** Hears every segment upload of every capture (metrics). @default nobody */
  uploads?: SegmentUploadObserver;
}

/** Journals the lag probe reads at once. */
const TAIL_PROBES_AT_ONCE = 4;
/**
 * The least time one probe takes, so a worker opens at most TAIL_PROBES_AT_ONCE ÷ this = 20
 * probe consumers a second on the broker, however many journals it captures: with 1,000 journals
 * each is probed every 50 s rather than every 10 s.
 */
const TAIL_PROBE_MIN_MS = 200;

export class CaptureSet {
  private readonly captures = new Map<string, QueueCapture>();
  /** Set by close(): a lag probe pass then ends without waiting out its pacing. */
  private closed = false;
  private readonly connections: VhostConnections;
  /** Lane of each captured queue, per vhost. */
  private readonly slots = new Map<string, LaneSlots>();
  /** Lanes whose reconnects re-attach their captures, per vhost. */
  private readonly watched = new Map<string, Set<number>>();
  /** The channel each capture reads on: closed when the capture is released or replaced. */
  private readonly channels = new Map<QueueCapture, Channel>();
  /** New captures between being placed on a lane and being in `captures`: a reconnect of the lane meanwhile re-attaches them too. */
  private readonly attaching = new Set<QueueCapture>();
  /** The connection each capture was last attached through: only a failure on that one fails it. */
  private readonly attachedVia = new Map<QueueCapture, ChannelModel>();
  /** apply() runs one at a time: two overlapping assignments must not both start a queue. */
  private applying: Promise<void> = Promise.resolve();
  /** The lag probe's own connections: its channels never take a capture lane's room. */
  private readonly probeConnections: VhostConnections;
  private probing = false;

  constructor(private readonly options: CaptureSetOptions) {
    this.connections = new VhostConnections(options.amqpUrl, options.log, options.clientName);
    this.probeConnections = new VhostConnections(options.amqpUrl, options.log, `${options.clientName} lag probe`);
  }

  get(vhost: string, queue: string): QueueCapture | undefined {
    return this.captures.get(queueKey(vhost, queue));
  }

  all(): QueueCapture[] {
    return [...this.captures.values()];
  }

  /**
   * Makes the captured set equal to `assignments`. Queues already captured keep their state
   * (their resume offsets are only used for queues new to this worker).
   */
  apply(assignments: QueueAssignment[]): Promise<void> {
    const run = this.applying.then(() => this.applyNow(assignments));
    this.applying = run.catch(() => {});
    return run;
  }

  private async applyNow(assignments: QueueAssignment[]): Promise<void> {
    const wanted = new Map(assignments.map((a) => [queueKey(a.definition!.vhost, a.definition!.name), a]));
    // Releases first, so their slots are free for the queues started below.
    for (const [id, capture] of this.captures) {
      if (!wanted.has(id)) {
        this.captures.delete(id);
        await this.stop(capture);
        this.slotsOf(capture.vhost).release(id);
        this.options.log.info('capture released', { vhost: capture.vhost, queue: capture.queue });
      }
    }
    // A failed capture is retried with a fresh one, but it stays in the set (and its error in
    // status) until the replacement is attached: an operator never sees a failing queue as healthy.
    const started: QueueCapture[] = [];
    for (const [id, assignment] of wanted) {
      const existing = this.captures.get(id);
      if (existing && !existing.error) {
        existing.definition = assignment.definition!;
        continue;
      }
      if (existing) await this.stop(existing);
      const capture = new QueueCapture({
        namespace: this.options.namespace,
        assignment,
        store: this.options.store,
        log: this.options.log,
        segmentBytes: this.options.segmentBytes,
        codec: captureCodec(this.options.segmentCodec),
        prefetch: this.options.prefetch,
        uploads: this.options.uploads,
      });
      if (!existing) this.captures.set(id, capture);
      started.push(capture);
    }
    // A replacement keeps its queue's lane; a new queue takes the lowest lane with room.
    const groups: Array<{ vhost: string; lane: number; captures: QueueCapture[] }> = [];
    for (const capture of started) {
      const lane = this.slotsOf(capture.vhost).take(queueKey(capture.vhost, capture.queue));
      const group = groups.find((g) => g.vhost === capture.vhost && g.lane === lane);
      if (group) group.captures.push(capture);
      else groups.push({ vhost: capture.vhost, lane, captures: [capture] });
    }
    for (const { vhost, lane, captures } of groups) {
      for (const capture of captures) this.attaching.add(capture);
      try {
        const connection = await this.connectLane(vhost, lane);
        await Promise.all(captures.map((capture) => this.attach(connection, capture)));
      } catch (err) {
        // Failed, not silently idle: the next assignment replaces them (on the same lane).
        for (const capture of captures) capture.fail(new JournalReadError(`cannot connect to vhost ${vhost} to read journal ${capture.journal} of ${capture.queue}: ${errorMessage(err)}`, { cause: err }));
      } finally {
        for (const capture of captures) this.attaching.delete(capture);
      }
      for (const capture of captures) this.captures.set(queueKey(capture.vhost, capture.queue), capture);
      this.options.log.info('capturing new queues', { vhost, lane, queues: captures.length });
    }
  }

  private slotsOf(vhost: string): LaneSlots {
    let slots = this.slots.get(vhost);
    if (!slots) {
      slots = new LaneSlots(this.options.channelsPerConnection);
      this.slots.set(vhost, slots);
    }
    return slots;
  }

  /** The lane's connection, watched so that its reconnects re-attach the lane's captures. */
  private async connectLane(vhost: string, lane: number): Promise<ChannelModel> {
    const lanes = this.watched.get(vhost) ?? new Set<number>();
    this.watched.set(vhost, lanes);
    if (!lanes.has(lane)) {
      // Registered once per lane, even if this first connect fails: a later connect of the lane
      // then brings its reconnects to this listener.
      lanes.add(lane);
      let watching = false;
      await this.connections
        .watch(
          vhost,
          async (connection) => {
            if (watching) await this.reattach(vhost, lane, connection); // apply() attaches the first time
          },
          lane,
        )
        .finally(() => {
          watching = true;
        });
    }
    return this.connections.connect(vhost, lane);
  }

  /** After a lane's connection came back: its captures' channels died with the old one. */
  private async reattach(vhost: string, lane: number, connection: ChannelModel): Promise<void> {
    const slots = this.slotsOf(vhost);
    // Captures still being attached by apply() count too: the connection they were given is gone.
    const candidates = new Set([...this.captures.values(), ...this.attaching]);
    const captures = [...candidates].filter((c) => c.vhost === vhost && !c.error && slots.laneOf(queueKey(c.vhost, c.queue)) === lane);
    await Promise.all(captures.map((capture) => this.attach(connection, capture)));
    this.options.log.info('captures re-attached', { vhost, lane, queues: captures.length });
  }

  private async attach(connection: ChannelModel, capture: QueueCapture): Promise<void> {
    this.attachedVia.set(capture, connection);
    try {
      const channel = await connection.createChannel();
      this.channels.set(capture, channel);
      channel.on('error', (err) => this.options.log.warn('capture channel failed', { vhost: capture.vhost, queue: capture.queue, err: errorMessage(err) }));
      await capture.attach(channel);
    } catch (err) {
      // An attach through a connection that was replaced meanwhile is superseded by the re-attach
      // through the new one; only a failure on the latest connection stops the capture.
      if (this.attachedVia.get(capture) !== connection) {
        this.options.log.debug('attach through a replaced connection failed (re-attached since)', { vhost: capture.vhost, queue: capture.queue, err: errorMessage(err) });
        return;
      }
      capture.fail(new JournalReadError(`cannot read journal ${capture.journal} of ${capture.vhost}/${capture.queue}: ${errorMessage(err)}`, { cause: err }));
    }
  }

  /** Detaches a capture and closes its channel, so its lane's slot is really free. */
  private async stop(capture: QueueCapture): Promise<void> {
    await capture.detach();
    const channel = this.channels.get(capture);
    this.channels.delete(capture);
    this.attachedVia.delete(capture);
    // A channel of a dropped connection is already closed.
    await channel?.close().catch(() => {});
  }

  /** Flushes every capture's buffer; failures are retried on the next tick. */
  tick(): void {
    for (const capture of this.captures.values()) capture.tick();
  }

  /**
   * The lag probe: reads where every captured journal's tail is (journal-tail.ts), a few at a
   * time, and tells its capture. A pass still running when the next is due makes that one skip,
   * so with many queues each is simply probed less often. Failures only leave a queue unprobed.
   */
  async probeTails(): Promise<void> {
    if (this.probing) return;
    this.probing = true;
    try {
      const reading = this.all().filter((c) => c.reading);
      await forEachLimited(reading, TAIL_PROBES_AT_ONCE, async (capture) => {
        const started = Date.now();
        const connection = await this.probeConnections.connect(capture.vhost).catch(() => undefined);
        const tail = connection && (await probeJournalTail(connection, capture.journal));
        if (tail !== undefined) capture.tailProbed(tail, Date.now());
        const rest = TAIL_PROBE_MIN_MS - (Date.now() - started);
        if (rest > 0 && !this.closed) await new Promise((resolve) => setTimeout(resolve, rest).unref());
      });
    } finally {
      this.probing = false;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const capture of this.captures.values()) await capture.detach();
    this.captures.clear();
    this.channels.clear();
    this.attachedVia.clear();
    await this.connections.close();
    await this.probeConnections.close();
  }
}
