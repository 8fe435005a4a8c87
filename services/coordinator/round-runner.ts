/**
 * Carries out the effects of a CheckpointRound against the real world: fences through AMQP,
 * PREPARE/DECIDE through gRPC, the decision through Redis, the manifest through the store.
 */
import type { CheckpointManifest, QueueCheckpoint } from '../gen/tidemark/v1/store.js';
import type { DecideRequest, PrepareReply, PrepareRequest, QueueRef } from '../gen/tidemark/v1/worker.js';
import { CheckpointRound, type Outcome, type RoundEffect, type RoundEvent, type RoundPlan } from './checkpoint-round.js';
import {
  type Catalog,
  type Clock,
  type QueueHead,
  type DecisionLog,
  errorMessage,
  failpoint,
  FENCE_EPOCH_HEADER,
  FENCE_NAMESPACE_HEADER,
  FENCE_ROUND_HEADER,
  isRetryableGrpcError,
  MARKER_HEADER,
  MARKER_ROUND_SUFFIX,
  LeadershipLostError,
  type Logger,
  queueKey,
  type OutsideQueue,
  retry,
  systemClock,
  type WorkerClient,
} from '../core/index.js';
import type { FencePublisher } from './fence-channels.js';
import type { QueueCensus } from '../gen/tidemark/v1/worker.js';
import type { QueueDefinition } from '../gen/tidemark/v1/store.js';
import { type CensusHistory, type CensusSettings, takeVhostCensus, type VhostCensusParts } from './queue-census.js';
import { decideRequest } from './outside-cut.js';
import { restartReason, type BrokerContinuity } from './broker-continuity.js';
import { DECIDE_ATTEMPTS, DECIDE_BACKOFF, DECIDE_DEADLINE_MS, MANIFEST_BACKOFF, PREPARE_BACKOFF, prepareRetryFits, ROUND_DEADLINE_EXTRA_MS } from './timing.js';

export interface RoundContext {
  namespace: string;
  plan: RoundPlan;
  /** Lease holder string, for fenced Redis writes. */
  holder: string;
  decisions: DecisionLog;
  catalog: Catalog;
  workers: Map<string, WorkerClient>;
  /** The leader's fence channels, kept open across rounds (fence-channels.ts). */
  fences: FencePublisher;
  /** Tells whether the broker restarted before the fence (I5, broker-continuity.ts). */
  continuity: BrokerContinuity;
  prepareTimeoutMs: number;
  /** Whether this manifest should be consolidated into a full one. */
  consolidate: boolean;
  /** Where a consolidated entry may let history go (retention, checkpoint-pruner.ts). @default keep all */
  historyFrom?: (entry: QueueCheckpoint) => QueueHead | undefined;
  /** False once leadership is lost: stops the manifest retry loop. */
  stillLeader: () => boolean;
  /** A decision that could not be delivered to a worker: the coordinator re-sends it later. */
  undelivered: (workerId: string, request: DecideRequest) => void;
  log: Logger;
  /** Times the fence and the decision, and bounds PREPARE's retries. @default systemClock */
  clock?: Clock;
  /** Aborts when the leader stops: the round, if still undecided, aborts (it is never left half-prepared). */
  signal?: AbortSignal;
  /**
   * Takes a census of the source queues between a marker and the fence (queue-census.ts), so
   * workers can find each queue's head. Absent: no census, heads stay where they are.
   */
  census?: {
    management: Pick<VhostCensusParts, 'consumersByQueue' | 'censusCounters'>;
    history: CensusHistory;
    settings: CensusSettings;
  };
}

export interface RoundResult {
  epoch: number;
  /**
   * 'in-doubt': COMMIT was decided but this leader could not make it visible (it lost the lease,
   * or the decision write failed); the next leader finishes or presumes abort.
   */
  outcome: Outcome | 'in-doubt';
  reason: string;
  manifest?: CheckpointManifest;
  /** An effect failed (Redis, store, lost lease): the round's records may need recovery. */
  effectFailed?: boolean;
  /** Committed with these queues outside its cut (G8): carried forward, or left out (since epoch 0). */
  outside?: OutsideQueue[];
}

export function runRound(context: RoundContext): Promise<RoundResult> {
  const { plan, log } = context;
  const clock = context.clock ?? systemClock;
  const round = new CheckpointRound(plan);
  let manifest: CheckpointManifest | undefined;
  let census = new Map<string, QueueCensus>();
  return new Promise<RoundResult>((resolve) => {
    let finished = false;
    const timer = setTimeout(() => dispatch({ type: 'deadline' }), context.prepareTimeoutMs + ROUND_DEADLINE_EXTRA_MS);
    const onStop = () => dispatch({ type: 'stopping', reason: `the leader is stopping (${errorMessage(context.signal?.reason)})` });
    const dispatch = (event: RoundEvent): void => {
      if (finished) return;
      for (const effect of round.handle(event)) {
        execute(effect).catch((err) => {
          // An effect that cannot complete (lost leadership) ends the round undecided here; the
          // next leader presumes abort unless COMMIT was recorded.
          log.error('round step failed', { epoch: plan.epoch, roundId: plan.roundId, step: effect.type, err: errorMessage(err) });
          const outcome = round.decision === 'committed' ? 'in-doubt' : 'aborted';
          done({ epoch: plan.epoch, outcome, reason: `${effect.type} failed: ${errorMessage(err)}`, effectFailed: true });
        });
      }
    };
    const done = (result: RoundResult): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      context.signal?.removeEventListener('abort', onStop);
      resolve(result);
    };
    const execute = async (effect: RoundEffect): Promise<void> => {
      switch (effect.type) {
        case 'publish-fences':
          try {
            await failpoint('coordinator.before-fence');
            census = await publishFences(context, effect.epoch, effect.vhosts);
            const atMs = clock.now();
            // After the fence is confirmed: a sentinel still there means no restart hole before the cut.
            const restarted = await context.continuity.restarted(effect.vhosts);
            for (const vhost of restarted) context.log.warn('the broker restarted since the last check: the round marks the vhost\'s queues as possibly incomplete', { vhost, epoch: effect.epoch });
            await failpoint('coordinator.after-fence');
            dispatch({ type: 'fences-published', atMs, restarted: restarted.map((vhost) => ({ vhost, reason: restartReason(vhost) })) });
          } catch (err) {
            dispatch({ type: 'fences-failed', reason: errorMessage(err) });
          }
          return;
        case 'prepare': {
          const client = context.workers.get(effect.participant.workerId);
          if (!client) {
            dispatch({ type: 'prepare-failed', workerId: effect.participant.workerId, reason: 'no client for worker' });
            return;
          }
          try {
            const reply = await prepareWithRetries(
              client,
              { leaderToken: plan.leaderToken, epoch: effect.epoch, roundId: plan.roundId, queues: withCensus(effect.participant.queues, census) },
              clock.now() + context.prepareTimeoutMs,
              clock,
            );
            await failpoint('coordinator.after-vote');
            dispatch({ type: 'vote', workerId: effect.participant.workerId, reply });
          } catch (err) {
            dispatch({ type: 'prepare-failed', workerId: effect.participant.workerId, reason: errorMessage(err) });
          }
          return;
        }
        case 'record-decision': {
          // The manifest's commit time is the recorded one, so a new leader rebuilds it exactly.
          const atMs = clock.now();
          await context.decisions.record(context.holder, {
            epoch: effect.epoch,
            roundId: plan.roundId,
            state: effect.decision,
            reason: effect.reason,
            leaderToken: plan.leaderToken,
            atMs,
            commit: effect.commit,
          });
          await failpoint('coordinator.after-decision');
          dispatch({ type: 'decision-recorded', atMs });
          return;
        }
        case 'write-manifest':
          // An incremental entry says where its chain's kept history begins (Catalog.inheritHistory).
          manifest = context.consolidate ? await context.catalog.consolidate(effect.manifest, context.historyFrom) : await context.catalog.inheritHistory(effect.manifest);
          await writeUntilLanded(context, manifest);
          await failpoint('coordinator.after-manifest');
          dispatch({ type: 'manifest-written' });
          return;
        case 'send-decision':
          void sendDecision(context, effect.epoch, effect.decision, effect.workerIds, effect.counted);
          return;
        case 'finish': {
          const outside = round.outside;
          if (effect.outcome === 'committed' && outside.length > 0) {
            // G8: the others committed; say which queues did not, and why, every round they do not.
            log.warn('checkpoint committed with queues outside its cut', {
              epoch: effect.epoch,
              roundId: plan.roundId,
              reason: effect.reason,
              queues: manifest?.queues.length,
              outside: outside.length,
              messages: manifest?.messages,
            });
          } else if (effect.outcome === 'committed') {
            log.info('checkpoint committed', { epoch: effect.epoch, roundId: plan.roundId, queues: manifest?.queues.length, messages: manifest?.messages });
          } else log.warn('round aborted', { epoch: effect.epoch, roundId: plan.roundId, outcome: effect.outcome, reason: effect.reason });
          done({ epoch: effect.epoch, outcome: effect.outcome, reason: effect.reason, manifest, ...(outside.length > 0 ? { outside } : {}) });
          return;
        }
          return;
      }
    };
    dispatch({ type: 'start' });
    if (context.signal?.aborted) onStop();
    else context.signal?.addEventListener('abort', onStop, { once: true });
  });
}

/**
 * One fence per vhost, published with a confirm so a YES vote cannot precede it; before each, the
 * vhost's census (its marker, then the counts). Returns the census by queue id.
 */
async function publishFences(context: RoundContext, epoch: number, vhosts: string[]): Promise<Map<string, QueueCensus>> {
  const { plan, namespace, fences } = context;
  const census = new Map<string, QueueCensus>();
  await Promise.all(
    vhosts.map(async (vhost) => {
      for (const [id, c] of await vhostCensus(context, epoch, vhost)) census.set(id, c);
      await fences.publish(vhost, plan.fenceExchange, Buffer.from(JSON.stringify({ epoch, vhost, round: plan.roundId })), {
        persistent: true,
        contentType: 'application/json',
        headers: { [FENCE_EPOCH_HEADER]: epoch, [FENCE_ROUND_HEADER]: plan.roundId, [FENCE_NAMESPACE_HEADER]: namespace },
      });
    }),
  );
  return census;
}

/** The census of a vhost's queues; a failure only costs the vhost its census this round. */
async function vhostCensus(context: RoundContext, epoch: number, vhost: string): Promise<Map<string, QueueCensus>> {
  const { plan, namespace, fences, census, log } = context;
  if (!census) return new Map();
  const clock = context.clock ?? systemClock;
  const queues = new Map<string, QueueDefinition>();
  for (const [id, q] of plan.queues) if (q.definition.vhost === vhost) queues.set(id, q.definition);
  try {
    return await takeVhostCensus(
      vhost,
      queues,
      {
        ...census.management,
        publishMarker: () =>
          fences.publish(vhost, plan.fenceExchange, Buffer.from(JSON.stringify({ epoch, vhost, round: plan.roundId, marker: true })), {
            persistent: true,
            contentType: 'application/json',
            headers: {
              [FENCE_EPOCH_HEADER]: epoch,
              [FENCE_ROUND_HEADER]: `${plan.roundId}${MARKER_ROUND_SUFFIX}`,
              [MARKER_HEADER]: plan.roundId,
              [FENCE_NAMESPACE_HEADER]: namespace,
            },
          }),
        declareQueues: (names) => fences.declareQueues(vhost, names),
        streamExtents: (names) => fences.streamExtents(vhost, names),
        now: () => clock.now(),
      },
      census.history,
      census.settings,
    );
  } catch (err) {
    log.warn('no census of a vhost: its heads stay where they were', { epoch, vhost, err: errorMessage(err) });
    return new Map();
  }
}

/** The queues of a PREPARE with their census. */
function withCensus(queues: QueueRef[], census: Map<string, QueueCensus>): QueueRef[] {
  return queues.map((q) => ({ ...q, census: census.get(queueKey(q.vhost, q.queue)) }));
}

/** The decision is recorded, so the manifest must land: retry until it does or we are deposed. */
async function writeUntilLanded(context: RoundContext, manifest: CheckpointManifest): Promise<void> {
  await retry(
    async () => {
      if (!context.stillLeader()) {
        throw new LeadershipLostError(`leader token ${context.plan.leaderToken} lost its lease before the manifest of checkpoint ${manifest.epoch} landed; the next leader finishes it`);
      }
      await context.catalog.publish(manifest);
    },
    {
      ...MANIFEST_BACKOFF,
      retryable: (err) => !(err instanceof LeadershipLostError),
      onRetry: (err) => context.log.warn('checkpoint manifest not written yet; retrying', { epoch: manifest.epoch, err: errorMessage(err) }),
    },
  );
}

/**
 * PREPARE is idempotent on the worker (a repeat of the same round gets the same vote), so a call
 * lost to a transient fault (connection reset, worker restarting its server) is retried with
 * backoff until the round's deadline; any other failure is final.
 */
async function prepareWithRetries(client: WorkerClient, request: PrepareRequest, deadline: number, clock: Clock): Promise<PrepareReply> {
  return retry(() => client.prepare(request, Math.max(1, deadline - clock.now())), {
    ...PREPARE_BACKOFF,
    retryable: (err, _attempt, delayMs) => isRetryableGrpcError(err) && prepareRetryFits(clock.now(), delayMs, deadline),
  });
}

/**
 * Tells every participant the decision, with a few quick retries; what still fails is handed to
 * the coordinator, which re-sends it later (and the worker asks for it meanwhile).
 */
async function sendDecision(context: RoundContext, epoch: number, decision: Outcome, workerIds: string[], counted?: Map<string, QueueRef[]>): Promise<void> {
  const { leaderToken, roundId } = context.plan;
  await Promise.all(
    workerIds.map(async (workerId) => {
      // With queues outside the cut, each COMMIT lists what it counted of the worker's vote (G8).
      const request = decideRequest({ leaderToken, epoch, roundId }, decision === 'committed', counted && (counted.get(workerId) ?? []));
      const client = context.workers.get(workerId);
      if (client && (await deliverDecision(client, request, DECIDE_ATTEMPTS, context.log))) return;
      context.undelivered(workerId, request);
    }),
  );
}

/**
 * Sends one decision with up to `attempts` tries and backoff. True when nothing is left to send:
 * the worker has it, or refused it for good (a newer leader exists, a bad request).
 */
export async function deliverDecision(client: WorkerClient, request: DecideRequest, attempts: number, log: Logger): Promise<boolean> {
  const failed = (err: unknown, attempt: number) => log.debug('sending a decision failed', { epoch: request.epoch, address: client.address, attempt, err: errorMessage(err) });
  try {
    await retry(() => client.decide(request, DECIDE_DEADLINE_MS), { ...DECIDE_BACKOFF, attempts, retryable: isRetryableGrpcError, onRetry: failed });
    return true;
  } catch (err) {
    failed(err, attempts);
    return !isRetryableGrpcError(err);
  }
}
