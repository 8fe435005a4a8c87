import { it } from 'vitest';
import { simulate } from '../sim/simulation.js';
import { mergeOverrides } from '../sim/options.js';
import { REGRESSIONS } from '../sim/regressions.js';
it('find', () => {
  for (const r of REGRESSIONS) {
    const overrides = mergeOverrides(r.context, r.broken);
    const ok = (seed: number) => simulate(seed, overrides).violation?.invariant === r.violates && (!r.broken || simulate(seed, r.context).violation === undefined);
    if (ok(r.seed)) continue;
    let found = 0;
    for (let seed = 1; seed <= 150_000; seed += 1) if (ok(seed)) { found = seed; break; }
    console.log(`FOUND ${r.seed} -> ${found} :: ${r.bug.slice(0, 60)}`);
  }
}, 3_000_000);
