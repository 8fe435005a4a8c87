/** What a coordinator holds of the leader lease (LeaseHolding), the state leader-lease.ts and the simulation drive. */
import { describe, expect, it } from 'vitest';
import { LeaseHolding } from '../../services/coordinator/lease-holding.js';

describe('LeaseHolding', () => {
  it('names the acquisition in its holder string, so two acquisitions with one token differ', () => {
    const first = new LeaseHolding(1_000);
    first.acquired(3, LeaseHolding.claim('c1', 'aa'), 0);
    const again = new LeaseHolding(1_000);
    again.acquired(3, LeaseHolding.claim('c1', 'bb'), 0);
    expect(first.holder).toBe('3:c1:aa');
    expect(again.holder).not.toBe(first.holder);
  });

  it('is held until a lease time after the last success was sent, and not after a refused renewal', () => {
    const lease = new LeaseHolding(1_000);
    lease.acquired(0, 'c1:aa', 0);
    expect(lease.held(0), 'someone else holds it').toBe(false);
    lease.acquired(1, 'c1:aa', 100);
    expect(lease.held(1_099)).toBe(true);
    expect(lease.held(1_100)).toBe(false);
    lease.renewed(true, 900);
    expect(lease.held(1_899)).toBe(true);
    lease.renewed(false, 1_000);
    expect(lease.token).toBe(0);
    expect(lease.held(1_001)).toBe(false);
  });

  it('stops holding on release, before Redis is told, and hands out the holder to release with', () => {
    const lease = new LeaseHolding(1_000);
    lease.acquired(7, 'c2:cc', 0);
    expect(lease.release()).toBe('7:c2:cc');
    expect(lease.token).toBe(0);
    expect(lease.held(1)).toBe(false);
  });
});
