import { describe, expect, it } from 'vitest';
import { parseBindingsMode, planRestore, type PlannedRestore, type RestoreSelection } from '../../services/coordinator/restore-plan.js';
import { ConfigError } from '../../services/core/errors.js';
import { rendezvousOwner } from '../../services/core/state/rendezvous.js';
import type { CheckpointManifest, QueueCheckpoint } from '../../services/gen/tidemark/v1/store.js';
import { configError } from '../helpers/errors.js';

function queue(vhost: string, name: string): QueueCheckpoint {
  return {
    definition: { vhost, name, type: 'classic', durable: true, autoDelete: false, arguments: undefined, bindings: [] },
    journal: `tidemark.journal.${name}`,
    startOffset: 0,
    cutOffset: 10,
    messages: 10,
    bodyBytes: 100,
    segments: [],
    baseEpoch: 0,
    workerId: 'w',
    incomplete: [],
    headOffset: 0, headMessages: 0, possiblyAcked: 0, headBasis: '', predating: 0, outsideCut: undefined, historyOffset: 0, historyMessages: 0, headKnown: false,
  };
}

const QUEUES: [string, string][] = [
  ['/', 'q1'],
  ['/', 'q2'],
  ['/', 'qa.b'],
  ['/', 'orders.eu'],
  ['/', 'orders.us'],
  ['/', 'team/a/jobs'],
  ['/', 'other'],
  ['prod', 'q1'],
  ['prod', 'billing'],
  ['prod.eu', 'billing'],
];

function manifest(queues: [string, string][] = QUEUES, epoch = 17): CheckpointManifest {
  return {
    formatVersion: 1,
    roundId: 'round',
    epoch,
    parentEpoch: 0,
    full: true,
    startedAtMs: 0,
    committedAtMs: 0,
    leaderToken: 1,
    coordinatorId: 'c',
    fences: [],
    exchanges: [],
    queues: queues.map(([v, n]) => queue(v, n)),
    messages: 0,
    bodyBytes: 0,
  };
}

function selection(over: Partial<RestoreSelection> = {}): RestoreSelection {
  return { queues: [], prefix: '', map: [], targetVhost: '', bindings: 'auto', ...over };
}

const WORKERS = ['worker-1', 'worker-2', 'worker-3'];

function plan(over: Partial<RestoreSelection> = {}, m = manifest(), workers = WORKERS): PlannedRestore[] {
  return planRestore(m, selection(over), workers);
}

/** `vhost/name` of each selected source queue, in plan order. */
function sources(planned: PlannedRestore[]): string[] {
  return planned.map((p) => `${p.entry.definition!.vhost}|${p.entry.definition!.name}`);
}

function targets(planned: PlannedRestore[]): Record<string, string> {
  return Object.fromEntries(planned.map((p) => [`${p.entry.definition!.vhost}|${p.entry.definition!.name}`, `${p.targetVhost}|${p.targetName}`]));
}

describe('restore plan: selecting queues', () => {
  it('selects every queue when no selector is given (or only blank ones)', () => {
    expect(sources(plan())).toEqual(QUEUES.map(([v, n]) => `${v}|${n}`));
    expect(sources(plan({ queues: ['', '  '] }))).toEqual(QUEUES.map(([v, n]) => `${v}|${n}`));
  });

  it('matches a bare glob against queue names in every vhost', () => {
    expect(sources(plan({ queues: ['q*'] }))).toEqual(['/|q1', '/|q2', '/|qa.b', 'prod|q1']);
    expect(sources(plan({ queues: ['q?'] }))).toEqual(['/|q1', '/|q2', 'prod|q1']);
  });

  it('matches whole names: a glob is not a substring or prefix search', () => {
    expect(() => plan({ queues: ['q'] })).toThrow(ConfigError);
    expect(() => plan({ queues: ['orders'] })).toThrow(ConfigError);
    expect(() => plan({ queues: ['eu'] })).toThrow(ConfigError);
  });

  it('supports classes and brace alternatives', () => {
    expect(sources(plan({ queues: ['/:q[12]'] }))).toEqual(['/|q1', '/|q2']);
    expect(sources(plan({ queues: ['/:{q1,other}'] }))).toEqual(['/|q1', '/|other']);
  });

  it('limits a vhost:glob selector to matching vhosts', () => {
    expect(sources(plan({ queues: ['prod:q*'] }))).toEqual(['prod|q1']);
    expect(sources(plan({ queues: ['/:q1'] }))).toEqual(['/|q1']);
    expect(sources(plan({ queues: ['prod*:billing'] }))).toEqual(['prod|billing', 'prod.eu|billing']);
    expect(sources(plan({ queues: ['prod:billing'] }))).toEqual(['prod|billing']);
  });

  it('treats dots and slashes in names as ordinary characters', () => {
    expect(sources(plan({ queues: ['orders.*'] }))).toEqual(['/|orders.eu', '/|orders.us']);
    // '*' crosses '/' because queue names are not paths.
    expect(sources(plan({ queues: ['team*'] }))).toEqual(['/|team/a/jobs']);
    expect(sources(plan({ queues: ['team/*/jobs'] }))).toEqual(['/|team/a/jobs']);
    expect(sources(plan({ queues: ['/:team/a/jobs'] }))).toEqual(['/|team/a/jobs']);
    // A '.' in a glob is literal, not "any character".
    expect(() => plan({ queues: ['orders_eu'] })).toThrow(ConfigError);
    expect(sources(plan({ queues: ['qa.b'] }))).toEqual(['/|qa.b']);
  });

  it('unions several include selectors, in manifest order, each queue once', () => {
    expect(sources(plan({ queues: ['other', 'q1', '/:q*'] }))).toEqual(['/|q1', '/|q2', '/|qa.b', '/|other', 'prod|q1']);
  });

  it('applies ! excludes after includes, and an exclude-only selection means "all but"', () => {
    expect(sources(plan({ queues: ['q*', '!prod:*'] }))).toEqual(['/|q1', '/|q2', '/|qa.b']);
    expect(sources(plan({ queues: ['!q*', '!orders.*', '!prod*:*'] }))).toEqual(['/|team/a/jobs', '/|other']);
    // An exclude wins whatever the order.
    expect(sources(plan({ queues: ['!/:q1', '/:q1', '/:q2'] }))).toEqual(['/|q2']);
  });

  it('refuses a selection that matches nothing with a ConfigError naming the checkpoint and the selector', () => {
    const err = configError(() => plan({ queues: ['nope*'] }, manifest(QUEUES, 23)));
    expect(err.message).toContain('checkpoint 23');
    expect(err.message).toContain('nope*');
    expect(err.message).toContain(`${QUEUES.length} queue(s)`);
    expect(err.message).toContain('tidemark checkpoints show 23');
    // Excluding everything is the same mistake.
    expect(() => plan({ queues: ['q*', '!*'] })).toThrow(/checkpoint 17/);
    // Whole-name match: 'q' is not a prefix search.
    expect(() => plan({ queues: ['q'] })).toThrow(ConfigError);
  });

  it('refuses a selector with an empty vhost or queue part', () => {
    expect(configError(() => plan({ queues: [':q1'] })).message).toContain(':q1');
    expect(configError(() => plan({ queues: ['prod:'] })).message).toContain('prod:');
    expect(() => plan({ queues: ['!'] })).toThrow(ConfigError);
  });
});

describe('restore plan: names and vhosts', () => {
  it('keeps names and vhosts by default', () => {
    const t = targets(plan({ queues: ['q1'] }));
    expect(t).toEqual({ '/|q1': '/|q1', 'prod|q1': 'prod|q1' });
  });

  it('prefixes every selected queue with --prefix', () => {
    expect(targets(plan({ queues: ['q*'], prefix: 'restored.' }))).toEqual({
      '/|q1': '/|restored.q1',
      '/|q2': '/|restored.q2',
      '/|qa.b': '/|restored.qa.b',
      'prod|q1': 'prod|restored.q1',
    });
  });

  it('renames with --map, which takes precedence over --prefix for the queues it names', () => {
    const t = targets(plan({ queues: ['/:q*'], prefix: 'r-', map: [{ from: 'q1', to: 'first' }] }));
    expect(t).toEqual({ '/|q1': '/|first', '/|q2': '/|r-q2', '/|qa.b': '/|r-qa.b' });
  });

  it('refuses a --map whose source is not among the selected queues', () => {
    const err = configError(() => plan({ queues: ['/:q*'], map: [{ from: 'billing', to: 'b2' }] }));
    expect(err.message).toContain('billing');
    // Existing in the checkpoint is not enough: it must be selected.
    expect(() => plan({ queues: ['/:q*'], map: [{ from: 'other', to: 'o2' }] })).toThrow(ConfigError);
    expect(() => plan({ map: [{ from: 'ghost', to: 'g' }] })).toThrow(/ghost/);
  });

  it('moves each source vhost into its own target vhost with a vhost map, which wins over targetVhost', () => {
    const t = targets(plan({ queues: ['q1', 'billing'], targetVhost: 'elsewhere', vhostMap: [{ from: 'prod', to: 'scratch-prod' }] }));
    expect(t).toEqual({ '/|q1': 'elsewhere|q1', 'prod|q1': 'scratch-prod|q1', 'prod|billing': 'scratch-prod|billing', 'prod.eu|billing': 'elsewhere|billing' });
    // Same-named queues of two vhosts stay apart when each vhost gets its own target.
    expect(() => plan({ queues: ['billing'], targetVhost: 'one' })).toThrow(/both restore into one\/billing/);
    expect(() => plan({ queues: ['billing'], vhostMap: [{ from: 'prod', to: 'a' }, { from: 'prod.eu', to: 'b' }] })).not.toThrow();
    expect(configError(() => plan({ vhostMap: [{ from: 'prod', to: '' }] })).message).toContain('--map-vhost');
  });

  it('refuses a malformed --map with either side empty', () => {
    expect(configError(() => plan({ map: [{ from: '', to: 'x' }] })).message).toContain('A=B');
    expect(configError(() => plan({ map: [{ from: 'q1', to: '' }] })).message).toContain('q1=');
  });

  it('moves every selected queue to --target-vhost', () => {
    const planned = plan({ queues: ['q1', 'billing'], targetVhost: 'restore' }, manifest([['/', 'q1'], ['prod', 'billing']]));
    expect(targets(planned)).toEqual({ '/|q1': 'restore|q1', 'prod|billing': 'restore|billing' });
  });

  it('refuses two queues that would restore into the same target, naming both', () => {
    // Same name from two vhosts into one target vhost.
    const err = configError(() => plan({ queues: ['q1'], targetVhost: 'restore' }));
    expect(err.message).toContain('restore/q1');
    expect(err.message).toMatch(/q1 and q1/);
    // A rename onto a name another selected queue keeps.
    const err2 = configError(() => plan({ queues: ['/:q1', '/:q2'], map: [{ from: 'q1', to: 'q2' }] }));
    expect(err2.message).toContain('//q2');
    // Two renames onto one name.
    expect(() => plan({ queues: ['/:q1', '/:q2'], map: [{ from: 'q1', to: 'x' }, { from: 'q2', to: 'x' }] })).toThrow(/\/x/);
  });

  it('allows a swap of two names, since no two targets collide', () => {
    const t = targets(plan({ queues: ['/:q1', '/:q2'], map: [{ from: 'q1', to: 'q2' }, { from: 'q2', to: 'q1' }] }));
    expect(t).toEqual({ '/|q1': '/|q2', '/|q2': '/|q1' });
  });
});

describe('restore plan: bindings', () => {
  const bindOf = (planned: PlannedRestore[]) => Object.fromEntries(planned.map((p) => [`${p.entry.definition!.vhost}|${p.entry.definition!.name}`, p.bind]));

  it('auto binds only queues that keep both their name and their vhost', () => {
    const planned = plan({ queues: ['/:q*'], map: [{ from: 'q2', to: 'q2-copy' }] });
    expect(bindOf(planned)).toEqual({ '/|q1': true, '/|q2': false, '/|qa.b': true });
    // A prefix renames everything: a restored copy must not start receiving live traffic.
    expect(Object.values(bindOf(plan({ queues: ['/:q*'], prefix: 'r.' })))).toEqual([false, false, false]);
    // A vhost move is a rename too.
    expect(Object.values(bindOf(plan({ queues: ['/:q*'], targetVhost: 'other' })))).toEqual([false, false, false]);
    // Naming the same vhost explicitly is not a move.
    expect(Object.values(bindOf(plan({ queues: ['/:q*'], targetVhost: '/' })))).toEqual([true, true, true]);
  });

  it('all binds every queue, none binds none', () => {
    expect(Object.values(bindOf(plan({ queues: ['/:q*'], prefix: 'r.', bindings: 'all' })))).toEqual([true, true, true]);
    expect(Object.values(bindOf(plan({ queues: ['/:q*'], bindings: 'none' })))).toEqual([false, false, false]);
  });

  it('parseBindingsMode accepts auto, all, none and empty (auto), and nothing else', () => {
    expect(parseBindingsMode('auto')).toBe('auto');
    expect(parseBindingsMode('all')).toBe('all');
    expect(parseBindingsMode('none')).toBe('none');
    expect(parseBindingsMode('')).toBe('auto');
    for (const bad of ['ALL', 'yes', ' none', 'some']) {
      const err = configError(() => parseBindingsMode(bad));
      expect(err.message).toContain(`"${bad}"`);
      expect(err.message).toContain('auto, all or none');
    }
  });
});

describe('restore plan: workers', () => {
  const many: [string, string][] = Array.from({ length: 60 }, (_, i) => ['/', `bulk-${i}`] as [string, string]);

  it('gives each queue to the rendezvous owner of its target, the same in every run and any worker order', () => {
    const a = plan({}, manifest(many));
    const b = plan({}, manifest(many), [...WORKERS].reverse());
    expect(b.map((p) => p.workerId)).toEqual(a.map((p) => p.workerId));
    for (const p of a) expect(p.workerId).toBe(rendezvousOwner(`${p.targetVhost}\u0000${p.targetName}`, WORKERS));
    // Spread: every worker gets some of 60 queues.
    expect(new Set(a.map((p) => p.workerId))).toEqual(new Set(WORKERS));
  });

  it('only ever names live workers', () => {
    const planned = plan({}, manifest(many), ['only-one']);
    expect(new Set(planned.map((p) => p.workerId))).toEqual(new Set(['only-one']));
  });

  it('refuses to plan without workers', () => {
    const err = configError(() => plan({}, manifest(), []));
    expect(err.message).toContain('no live workers');
  });

  it('carries the manifest entry through unchanged', () => {
    const m = manifest();
    const planned = plan({ queues: ['prod:billing'] }, m);
    expect(planned).toHaveLength(1);
    expect(planned[0].entry).toBe(m.queues[8]);
  });
});

describe('restore plan: names a restore may not publish into', () => {
  it('refuses targets named amq.* (RabbitMQ reserves them), by --prefix or --map', () => {
    expect(configError(() => plan({ prefix: 'amq.' })).message).toContain('names starting with "amq." are reserved by RabbitMQ');
    expect(configError(() => plan({ queues: ['/:q1'], map: [{ from: 'q1', to: 'amq.gen-x' }] })).message).toContain('/amq.gen-x');
  });

  it("refuses targets inside Tidemark's namespace (its journals and fences), and allows them without a namespace to check", () => {
    const error = configError(() => planRestore(manifest(), selection({ queues: ['/:q1'], map: [{ from: 'q1', to: 'tidemark.journal.q1' }], namespace: 'tidemark' }), WORKERS));
    expect(error.message).toContain("a name of Tidemark's own objects");
    expect(configError(() => planRestore(manifest(), selection({ prefix: 'tidemark.', namespace: 'tidemark' }), WORKERS)).message).toContain('"tidemark." prefix');
    // Another installation's namespace is just a name.
    expect(targets(planRestore(manifest(), selection({ queues: ['/:q1'], prefix: 'other.', namespace: 'tidemark' }), WORKERS))).toEqual({ '/|q1': '/|other.q1' });
  });

  it('refuses a target name past 255 bytes', () => {
    expect(configError(() => plan({ queues: ['/:q1'], prefix: 'p'.repeat(254) })).message).toContain('256 bytes; RabbitMQ allows 255');
  });
});
