import { describe, expect, it } from 'vitest';
import { CaptureLag, MAX_SAMPLES, RESOLUTION_MS } from '../../services/worker/capture-lag.js';

describe('capture lag', () => {
  it('is nothing before any offset is known, and nothing once everything known is durable', () => {
    const lag = new CaptureLag();
    expect(lag.at(0, 1_000)).toEqual({ messages: 0, seconds: 0 });
    lag.tailSeen(10, 1_000);
    expect(lag.at(10, 50_000)).toEqual({ messages: 0, seconds: 0 });
  });

  it('counts offsets past the durable one, aged from when the oldest of them was first known', () => {
    const lag = new CaptureLag();
    lag.tailSeen(100, 10_000); // the probe: offsets below 100 exist
    lag.tailSeen(150, 20_000);
    expect(lag.at(40, 25_000)).toEqual({ messages: 110, seconds: 15 });
    // Durable past 100: what is behind now was first known at 20 s.
    expect(lag.at(120, 25_000)).toEqual({ messages: 30, seconds: 5 });
    expect(lag.at(150, 25_000)).toEqual({ messages: 0, seconds: 0 });
  });

  it('does not age a new backlog from an old sample of a tail it has already passed', () => {
    const lag = new CaptureLag();
    lag.tailSeen(10, 0);
    expect(lag.at(10, 60_000).seconds).toBe(0);
    lag.tailSeen(10, 61_000); // the probe repeats the same tail
    lag.tailSeen(12, 90_000);
    expect(lag.at(10, 95_000)).toEqual({ messages: 2, seconds: 5 });
  });

  it('merges samples closer together than its resolution, never dating offsets earlier than that', () => {
    const lag = new CaptureLag();
    lag.tailSeen(1, 0);
    lag.tailSeen(2, RESOLUTION_MS - 1);
    lag.tailSeen(3, RESOLUTION_MS + 5);
    expect(lag.at(1, 10_000).seconds).toBe(10);
    expect(lag.at(2, 10_000).seconds).toBe((10_000 - RESOLUTION_MS - 5) / 1000);
  });

  it('keeps the oldest sample when it thins a long backlog, so the age does not shrink', () => {
    const lag = new CaptureLag();
    for (let i = 0; i < MAX_SAMPLES * 3; i += 1) lag.tailSeen(i + 1, i * RESOLUTION_MS);
    const now = MAX_SAMPLES * 3 * RESOLUTION_MS;
    const { messages, seconds } = lag.at(0, now);
    expect(messages).toBe(MAX_SAMPLES * 3);
    expect(seconds).toBe(now / 1000);
  });
});
