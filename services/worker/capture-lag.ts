/**
 * How far one queue's capture is behind its journal's tail (pure: no I/O, time passed in).
 *
 * The worker learns that journal offsets exist in two ways: it reads them (a delivery at offset o
 * proves offsets below o + 1 existed then), and its tail probe sees the journal's last chunk
 * (journal-tail.ts). Each is a sample (when, tail): every offset below `tail` existed at `when`.
 * Against the offset below which everything is durable (`caughtUp`):
 *
 * - messages behind = the highest tail known - caughtUp;
 * - seconds behind = now - the time of the earliest sample whose tail is above caughtUp: how long
 *   the oldest offset not yet durable has been known to exist. 0 when nothing is behind.
 *
 * So a capture that starts behind (a new owner re-reading from the last cut) shows its backlog in
 * messages from the first probe, and in seconds from then on, not from when the broker wrote it.
 * Samples closer together than RESOLUTION_MS are merged (the later tail takes the earlier time),
 * and at most MAX_SAMPLES are kept (thinned by half when full): seconds are exact to about a second
 * while a capture is a few minutes behind, coarser past that.
 */

/** Samples taken closer together than this are one sample. */
export const RESOLUTION_MS = 1_000;
/** Most samples a capture keeps; a capture this far behind keeps every other one. */
export const MAX_SAMPLES = 512;

export interface Lag {
  /** Journal offsets known to exist and not yet durable (fences and markers count as offsets). */
  messages: number;
  /** How long the oldest of them has been known to exist, in seconds; 0 when there are none. */
  seconds: number;
}

export class CaptureLag {
  /** (when, tail) in time order, tails increasing. */
  private samples: Array<{ atMs: number; tail: number }> = [];

  /** Every offset below `tail` existed at `atMs`. */
  tailSeen(tail: number, atMs: number): void {
    const last = this.samples[this.samples.length - 1];
    if (last && tail <= last.tail) return;
    if (last && atMs - last.atMs < RESOLUTION_MS) {
      last.tail = tail;
      return;
    }
    if (this.samples.length >= MAX_SAMPLES) {
      // The oldest stays (it dates the oldest offset behind) and so does the highest tail.
      const kept = this.samples.length - 1;
      this.samples = this.samples.filter((_, i) => i % 2 === 0 || i === kept);
    }
    this.samples.push({ atMs, tail });
  }

  /** The lag at `nowMs`, when everything below `caughtUp` is durable. Forgets what caughtUp passed. */
  at(caughtUp: number, nowMs: number): Lag {
    let drop = 0;
    while (drop < this.samples.length && this.samples[drop].tail <= caughtUp) drop += 1;
    // The newest sample stays: it is the highest tail known, which a later probe may repeat.
    if (drop === this.samples.length && drop > 0) drop -= 1;
    if (drop > 0) this.samples.splice(0, drop);
    const oldest = this.samples[0];
    if (!oldest || oldest.tail <= caughtUp) return { messages: 0, seconds: 0 };
    const top = this.samples[this.samples.length - 1].tail;
    return { messages: top - caughtUp, seconds: Math.max(0, nowMs - oldest.atMs) / 1000 };
  }
}
