import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../services/core/errors.js';
import { DRILL_VHOST_PREFIX, ProtectionPolicy, parseProtectSpec } from '../../services/core/infrastructure/protect.js';

const NS = 'tidemark';

describe('ProtectionPolicy', () => {
  it('protects queues matching an include in its vhost only', () => {
    const p = new ProtectionPolicy('/:orders.*, prod:payments', NS);
    expect(p.matches('/', 'orders.eu')).toBe(true);
    expect(p.matches('prod', 'payments')).toBe(true);
    expect(p.matches('prod', 'orders.eu')).toBe(false);
    expect(p.matches('/', 'payments')).toBe(false);
    expect(p.matches('/', 'orders')).toBe(false);
  });

  it('reads a pattern without a vhost as vhost /', () => {
    const p = new ProtectionPolicy('orders.*', NS);
    expect(p.matches('/', 'orders.eu')).toBe(true);
    expect(p.matches('other', 'orders.eu')).toBe(false);
    expect(p.vhostPatterns()).toEqual(['/']);
  });

  it('lets * cross dots and slashes: queue names have no path structure', () => {
    const p = new ProtectionPolicy('/:orders.*,/:*.dlq,/:a?c', NS);
    expect(p.matches('/', 'orders.eu.1')).toBe(true);
    expect(p.matches('/', 'orders.eu/archive')).toBe(true);
    expect(p.matches('/', 'svc/orders.dlq')).toBe(true);
    expect(p.matches('/', 'a/c')).toBe(true);
    expect(new ProtectionPolicy('/:*', NS).matches('/', '.hidden/x.y')).toBe(true);
  });

  it('matches names that are a path\'s dot segments like any other name', () => {
    const all = new ProtectionPolicy('*:*', NS);
    for (const name of ['.', '..', '...', './x', '../..']) expect(all.matches(name, name), name).toBe(true);
    expect(new ProtectionPolicy('/:?.', NS).matches('/', '..')).toBe(true);
    expect(new ProtectionPolicy('/:..', NS).matches('/', '..')).toBe(true);
    expect(new ProtectionPolicy('/:..', NS).matches('/', '.')).toBe(false);
    expect(new ProtectionPolicy('/:.', NS).matches('/', '..')).toBe(false);
  });

  it('supports classes, braces (commas in braces stay in the glob) and escapes', () => {
    const p = new ProtectionPolicy('/:shard.[0-3], /:orders.{eu,us}.*, /:literal\\*', NS);
    expect(p.patterns.map((x) => x.queue)).toEqual(['shard.[0-3]', 'orders.{eu,us}.*', 'literal\\*']);
    expect(p.matches('/', 'shard.2')).toBe(true);
    expect(p.matches('/', 'shard.7')).toBe(false);
    expect(p.matches('/', 'orders.us.1')).toBe(true);
    expect(p.matches('/', 'orders.apac.1')).toBe(false);
    expect(p.matches('/', 'literal*')).toBe(true);
    expect(p.matches('/', 'literally')).toBe(false);
  });

  it('lets an exclude win over any include', () => {
    const p = new ProtectionPolicy('*:*, !/:*.tmp, !*:audit.*', NS);
    expect(p.matches('/', 'orders')).toBe(true);
    expect(p.matches('/', 'orders.tmp')).toBe(false);
    expect(p.matches('prod', 'orders.tmp')).toBe(true);
    expect(p.matches('prod', 'audit.log')).toBe(false);
  });

  it('matches vhost globs, including vhosts with slashes', () => {
    const p = new ProtectionPolicy('prod-*:orders, team/*:jobs', NS);
    expect(p.matches('prod-eu', 'orders')).toBe(true);
    expect(p.matches('staging', 'orders')).toBe(false);
    expect(p.matches('team/a', 'jobs')).toBe(true);
    expect(p.vhostPatterns()).toEqual(['prod-*', 'team/*']);
    expect(p.coversVhost('prod-us')).toBe(true);
    expect(p.coversVhost('/')).toBe(false);
  });

  it('lists each include vhost glob once, and not the exclude ones', () => {
    const p = new ProtectionPolicy('/:a, /:b, x:c, !y:d', NS);
    expect(p.vhostPatterns()).toEqual(['/', 'x']);
  });

  it("never matches Tidemark's own queues, whatever the patterns say", () => {
    const p = new ProtectionPolicy('*:*', NS);
    expect(p.matches('/', 'tidemark.journal.orders')).toBe(false);
    expect(p.matches('prod', 'tidemark.fence')).toBe(false);
    expect(p.matches('/', 'tidemark')).toBe(true);
    expect(p.matches('/', 'tidemarks.x')).toBe(true);
    expect(new ProtectionPolicy('*:*', 'other').matches('/', 'tidemark.journal.orders')).toBe(true);
  });

  it('never covers a restore-drill scratch vhost, even with *:* or a pattern naming it', () => {
    const drill = `${DRILL_VHOST_PREFIX}42-a1b2c3`;
    for (const spec of ['*:*', `${drill}:*`, 'tidemark-*:orders']) {
      const p = new ProtectionPolicy(spec, NS);
      expect(p.coversVhost(drill)).toBe(false);
      expect(p.matches(drill, 'orders')).toBe(false);
    }
    // Only the prefix is reserved: a vhost that merely mentions "drill" is still covered.
    const p = new ProtectionPolicy('*:*', NS);
    expect(p.coversVhost('tidemark-drills')).toBe(true);
    expect(p.coversVhost('prod-tidemark-drill-1')).toBe(true);
    expect(p.matches('tidemark-drills', 'orders')).toBe(true);
  });

  it('splits the vhost at the first colon, so queue globs may contain colons', () => {
    const p = new ProtectionPolicy('/:bull:jobs:*', NS);
    expect(p.matches('/', 'bull:jobs:wait')).toBe(true);
  });

  it('trims whitespace and ignores empty entries; an empty spec protects nothing', () => {
    const p = new ProtectionPolicy(' , /: orders ,, ', NS);
    expect(p.patterns).toEqual([{ source: '/: orders', exclude: false, vhost: '/', queue: 'orders' }]);
    expect(new ProtectionPolicy('', NS).matches('/', 'orders')).toBe(false);
    expect(new ProtectionPolicy('!/:x', NS).matches('/', 'orders')).toBe(false);
  });

  it.each([
    ['/:', 'empty queue glob'],
    [':', 'empty vhost'],
    [':orders', 'empty vhost'],
    ['!', 'empty'],
    ['!/:', 'empty queue glob'],
    ['/:orders.{eu,us', "unclosed '{'"],
    ['/:shard.[0-', "unclosed '['"],
  ])('rejects %j with a ConfigError naming the entry', (entry, why) => {
    const spec = `/:fine, ${entry}`;
    expect(() => parseProtectSpec(spec)).toThrow(ConfigError);
    expect(() => parseProtectSpec(spec)).toThrow(new RegExp(why.replace(/[{[]/g, '\\$&')));
    expect(() => new ProtectionPolicy(spec, NS)).toThrow(`"${entry}`);
  });
});
