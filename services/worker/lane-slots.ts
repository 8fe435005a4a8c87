/**
 * Which connection ("lane") of a vhost each capture's channel lives on. RabbitMQ caps the
 * channels of one connection (channel_max, 2,047 by default), so a worker spreads its captures
 * over lanes of at most `perLane` channels each.
 *
 * Invariants: no lane holds more than `perLane` ids; a new id goes to the lowest lane with room,
 * so lanes fill in order and a freed slot is reused before a new lane is opened; an id keeps its
 * lane until released (a reconnect re-attaches exactly the ids of the lane that dropped).
 */
export class LaneSlots {
  private readonly lanes = new Map<string, number>();
  /** Ids per lane, by lane number. */
  private readonly used: number[] = [];

  constructor(private readonly perLane: number) {
    if (!Number.isInteger(perLane) || perLane < 1) throw new RangeError(`channels per connection must be an integer >= 1, got ${perLane}`);
  }

  /** The lane `id` holds, taking a slot in the lowest lane with room if it holds none. */
  take(id: string): number {
    const held = this.lanes.get(id);
    if (held !== undefined) return held;
    let lane = this.used.findIndex((n) => n < this.perLane);
    if (lane === -1) {
      lane = this.used.length;
      this.used.push(0);
    }
    this.used[lane] += 1;
    this.lanes.set(id, lane);
    return lane;
  }

  /** Frees the slot `id` holds, if any. */
  release(id: string): void {
    const lane = this.lanes.get(id);
    if (lane === undefined) return;
    this.lanes.delete(id);
    this.used[lane] -= 1;
  }

  /** The lane `id` holds, or undefined. */
  laneOf(id: string): number | undefined {
    return this.lanes.get(id);
  }

  /** How many ids each lane holds, by lane number (trailing empty lanes included). */
  counts(): number[] {
    return [...this.used];
  }
}
