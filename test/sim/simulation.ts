/**
 * One simulated schedule: builds the world a seed describes (1-2 coordinators, 2-4 workers, 2-5
 * queues in 1-2 vhosts, producers), runs it with faults (lost, duplicated, delayed and reordered
 * messages; crashes, restarts and pauses, also inside rounds; store, Redis and fence failures;
 * optionally Redis loss),
 * then stops the faults and lets it settle. The checker sees every step; the first violation ends
 * the run. The same seed (and overrides) always gives the same trace.
 *
 * The public entry of test/sim: `simulate(seed)`, `describeFailure(result)`, `replayCommand(seed)`.
 */
import type { QueueDefinition } from '../../services/gen/tidemark/v1/store.js';
import { Broker, type SimQueue } from './broker.js';
import { CoordinatorNode } from './coordinator-node.js';
import { Checker, Violation, type InvariantName } from './invariants.js';
import { Network } from './network.js';
import { optionsFor, type OptionOverrides, type SimOptions } from './options.js';
import { Random } from './random.js';
import { RedisModel } from './redis.js';
import { Scheduler } from './scheduler.js';
import { ObjectStoreModel } from './store.js';
import { WorkerNode } from './worker-node.js';
import { emptyStats, type Node, type SimStats, type World } from './world.js';

export interface SimResult {
  seed: number;
  options: SimOptions;
  violation: { invariant: InvariantName; message: string } | undefined;
  steps: number;
  /** Virtual ms the schedule ran. */
  endedAtMs: number;
  /** Hash of the whole trace: equal for two runs of the same schedule. */
  traceHash: number;
  traceTail: string[];
  /** Every trace line, when options.fullTrace is set. */
  trace: string[] | undefined;
  stats: SimStats;
}

/** The command that replays one schedule exactly (test/unit/simulation.test.ts reads these variables). */
export function replayCommand(seed: number, overrides: OptionOverrides = {}): string {
  const options = Object.keys(overrides).length > 0 ? `SIM_OPTIONS='${JSON.stringify(overrides)}' ` : '';
  return `SIM_SEED=${seed} ${options}npx vitest run test/unit/simulation.test.ts`;
}

/** What a failing schedule reports: seed, invariant, what broke, the end of the trace, how to replay. */
export function describeFailure(result: SimResult, overrides: OptionOverrides = {}): string {
  if (!result.violation) return `seed ${result.seed}: no violation`;
  const { invariant, message } = result.violation;
  return [
    `seed ${result.seed} violates ${invariant}: ${message}`,
    `shape: ${result.options.coordinators} coordinator(s), ${result.options.workers} workers, ${result.options.queues} queues in ${result.options.vhosts} vhost(s); faults ${JSON.stringify(result.options.faults)}`,
    `last ${result.traceTail.length} trace lines (virtual ms, what happened):`,
    ...result.traceTail.map((line) => `  ${line}`),
    `replay: ${replayCommand(result.seed, overrides)}  (add SIM_TRACE=1 for the whole trace)`,
  ].join('\n');
}

/** After faults stop and everything has settled, keep running this long (late messages). */
const SETTLE_MS = 3_500;
const TRACE_TAIL = 60;

export function simulate(seed: number, overrides: OptionOverrides = {}): SimResult {
  const random = new Random(seed);
  const options = optionsFor(seed, random.fork(), overrides);
  const world = buildWorld(options, random.fork());
  const { scheduler } = world;
  const nodes: Node[] = [...world.workers.values()];
  for (let i = 0; i < options.coordinators; i += 1) nodes.push(new CoordinatorNode(`c${i}`, world));
  for (const node of nodes) (node as WorkerNode | CoordinatorNode).start();
  startProducers(world);
  startChaos(world, nodes);
  scheduler.at(options.faultPhaseMs, 'chaos', 'faults stop', () => calmDown(world, nodes));

  let violation: SimResult['violation'];
  let settledAt: number | undefined;
  const deadline = options.faultPhaseMs + options.calmPhaseMs;
  const unsettled = () =>
    world.checker.unsettled(world.workers.values(), options.gaps.inDoubtWaitsForLeaderChange) ?? (options.leaderMustOutrankWorkers ? outranked(world) : undefined);
  try {
    while (scheduler.step(deadline)) {
      if (!world.calm) continue;
      if (unsettled() === undefined) settledAt ??= scheduler.now;
      else settledAt = undefined;
      if (settledAt !== undefined && scheduler.now >= settledAt + SETTLE_MS) break;
    }
    if (settledAt === undefined) {
      const why = unsettled() ?? 'the world never went quiet';
      throw new Violation('convergence', `${options.calmPhaseMs} ms after faults stopped: ${why}`);
    }
  } catch (err) {
    if (!(err instanceof Violation)) throw err;
    violation = { invariant: err.invariant, message: err.message };
    scheduler.log(`VIOLATION ${err.invariant}: ${err.message}`);
  }
  if (outranked(world)) world.stats.leaderOutranked += 1;
  return {
    seed,
    options,
    violation,
    steps: scheduler.steps,
    endedAtMs: scheduler.now,
    traceHash: scheduler.hash,
    traceTail: scheduler.lastLines(),
    trace: scheduler.full,
    stats: world.stats,
  };
}

/**
 * What keeps the lease holder from ever finishing a round: a worker has seen a higher leader token
 * than its own, so it refuses every PREPARE and DECIDE of this leader as stale (open in the real
 * code, options.ts `leaderMustOutrankWorkers`).
 */
function outranked(world: World): string | undefined {
  if (world.redis.holder(world.scheduler.now) === undefined) return undefined;
  const token = world.redis.lease!.token;
  for (const worker of world.workers.values()) {
    if (worker.up && worker.seenToken > token) {
      return `the lease holder's token ${token} is below token ${worker.seenToken}, which worker ${worker.id} has seen: it refuses every call of this leader as stale`;
    }
  }
  return undefined;
}

function buildWorld(options: SimOptions, random: Random): World {
  const scheduler = new Scheduler(TRACE_TAIL, options.fullTrace);
  const offset = random.int(0, options.workers - 1);
  const queues: SimQueue[] = [];
  const definitions = new Map<string, QueueDefinition>();
  for (let i = 0; i < options.queues; i += 1) {
    const q: SimQueue = { vhost: `v${i % options.vhosts}`, name: `q${i}`, journal: `tidemark.journal.q${i}`, owner: `w${(i + offset) % options.workers}` };
    queues.push(q);
    definitions.set(q.name, { vhost: q.vhost, name: q.name, type: 'classic', durable: true, autoDelete: false, arguments: undefined, bindings: [] });
  }
  const broker = new Broker(queues);
  const store = new ObjectStoreModel();
  const redis = new RedisModel();
  const checker = new Checker(queues, broker, store, redis, options.strictForget);
  redis.onWrite = (record, lease) => checker.decisionWritten(record, lease);
  store.onManifest = (manifest, replaced, writer) => {
    // A manifest from a coordinator that does not hold the lease (deposed, paused, or Redis lost).
    const holder = redis.holder(scheduler.now);
    const prefix = `${redis.lease?.token}:${writer}`;
    if (holder !== prefix && !holder?.startsWith(`${prefix}:`)) world.stats.staleManifests += 1;
    checker.manifestWritten(manifest, replaced, writer);
  };
  store.onDelete = (key, writer) => {
    if (key.startsWith('checkpoints/')) world.stats.prunedCheckpoints += 1;
    else if (key.startsWith('segments/')) world.stats.sweptSegments += 1;
    else world.stats.sweptStaged += 1;
    checker.deleted(key, writer);
  };
  const world: World = {
    options,
    scheduler,
    random,
    net: new Network(scheduler, random, options.faults),
    broker,
    redis,
    store,
    checker,
    queues,
    definitions,
    workers: new Map(),
    outages: new Map(),
    calm: false,
    crash: (node) => crash(world, node),
    stats: emptyStats(),
  };
  for (let i = 0; i < options.workers; i += 1) {
    const id = `w${i}`;
    world.workers.set(id, new WorkerNode(id, world, queues.filter((q) => q.owner === id)));
  }
  return world;
}

/** Producers publish to random queues (confirmed once in the journal) until faults stop. */
function startProducers(world: World): void {
  const { scheduler, random, broker, queues } = world;
  const produce = () => {
    if (world.calm) return;
    for (let n = random.int(1, 3); n > 0; n -= 1) {
      const q = random.pick(queues);
      scheduler.log(`publish ${q.name} #${broker.publish(q.name)}`);
    }
    scheduler.at(random.int(30, 120), 'producers', 'produce', produce);
  };
  scheduler.at(random.int(0, 20), 'producers', 'produce', produce);
}

/** Crashes, pauses and Redis losses, drawn every 50-200 virtual ms while faults are on. */
function startChaos(world: World, nodes: Node[]): void {
  const { scheduler, random, options } = world;
  const f = options.faults;
  // Queue outages draw from a stream of their own: the other faults of a seed stay as they were.
  const outageRandom = new Random(options.seed * 7_919 + 29);
  const chaos = () => {
    if (world.calm) return;
    if (outageRandom.chance(f.queueOutage)) {
      const q = outageRandom.pick(world.queues);
      const until = scheduler.now + outageRandom.int(200, 3_000);
      world.outages.set(q.name, Math.max(until, world.outages.get(q.name) ?? 0));
      world.stats.queueOutages += 1;
      scheduler.log(`OUTAGE ${q.name}: its segment writes fail until ${until}`);
    }
    if (random.chance(f.crash)) crash(world, random.pick(nodes));
    if (random.chance(f.pause)) {
      const node = random.pick(nodes);
      const until = scheduler.now + random.int(100, 2 * options.leaseMs);
      scheduler.pause(node.id, until);
      world.stats.pauses += 1;
      scheduler.log(`PAUSE ${node.id} until ${until}`);
    }
    if (random.chance(f.redisLoss)) {
      world.redis.wipe();
      world.stats.redisLosses += 1;
      scheduler.log('REDIS LOST');
    }
    scheduler.at(random.int(50, 200), 'chaos', 'chaos', chaos);
  };
  scheduler.at(random.int(50, 200), 'chaos', 'chaos', chaos);
}

function crash(world: World, node: Node): void {
  if (!node.up) return;
  node.crash();
  world.stats.crashes += 1;
  world.scheduler.log(`CRASH ${node.id}`);
  world.scheduler.at(world.random.int(50, 2_000), 'chaos', `restart ${node.id}`, () => restart(world, node));
}

function restart(world: World, node: Node): void {
  if (node.up) return;
  node.restart();
  world.scheduler.log(`RESTART ${node.id}`);
}

/** Faults stop: the network heals, every node comes back, producers and new rounds stop. */
function calmDown(world: World, nodes: Node[]): void {
  world.calm = true;
  world.net.faulty = false;
  for (const node of nodes) restart(world, node);
}
