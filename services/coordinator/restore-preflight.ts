/**
 * Before a restore publishes anything: looks at every target queue in the target broker and says,
 * per queue, why restoring into it would go wrong in the chosen mode. A restore that finds a
 * conflict can stop with nothing published, instead of failing (or duplicating) half-way.
 *
 * Preflight only looks: a passive declare, a short-lived stream consumer, and, for a queue that
 * exists, a re-declare with the wanted arguments (a no-op when they are equal; the broker refuses
 * it, changing nothing, when they are not).
 */
import amqp, { type ChannelModel } from 'amqplib';
import type { QueueDefinition } from '../gen/tidemark/v1/store.js';
import { ConfigError, errorMessage, forEachLimited, TransientError } from '../core/index.js';
import { amqpSocketOptions, amqpUrlForVhost, argumentsConflict, probeQueue, queueDeclareOptions, redactUrl } from '../core/amqp/index.js';

/**
 * What a restore does with target queues that already exist:
 * - `recreate`: declares each target like the source; an existing one must be empty and have the
 *   same arguments.
 * - `append`: publishes after whatever an existing target holds; a missing one is declared.
 * - `refuse`: restores only into targets that do not exist yet.
 */
export type RestoreMode = 'recreate' | 'append' | 'refuse';

const MODES: readonly RestoreMode[] = ['recreate', 'append', 'refuse'];
const MODE_CHOICES =
  'recreate (declare the targets, refuse ones that hold messages or have other arguments; the default), ' +
  'append (add the messages to existing targets) or refuse (restore only into targets that do not exist yet)';

/**
 * The restore mode from `--mode` and the older `--append` flag: no mode means recreate, or append
 * when `append` is set. Throws ConfigError for an unknown mode, or for `append` with another mode.
 */
export function parseRestoreMode(mode: string, append: boolean): RestoreMode {
  const wanted = mode.trim().toLowerCase();
  if (wanted === '') return append ? 'append' : 'recreate';
  if (!(MODES as readonly string[]).includes(wanted)) {
    throw new ConfigError(`--mode "${mode}" is not a restore mode: use ${MODE_CHOICES}; nothing was restored`);
  }
  if (append && wanted !== 'append') {
    throw new ConfigError(`--append and --mode ${wanted} ask for different things: pass one of them (--append means --mode append); nothing was restored`);
  }
  return wanted as RestoreMode;
}

/** A queue a restore will publish into. */
export interface PreflightTarget {
  vhost: string;
  name: string;
  /** The source queue's definition from the checkpoint: the target is declared like it. */
  definition: QueueDefinition;
  /** An earlier run of this restore already published into it: its messages are expected there. */
  started: boolean;
}

/** What preflight found for one target. */
export interface PreflightResult {
  target: PreflightTarget;
  exists: boolean;
  holdsMessages: boolean;
  /** Why restoring into this target in the chosen mode would go wrong, and what to do; '' if nothing. */
  conflict: string;
}

/** Targets of one vhost probed at the same time (each on its own channel). */
const PROBES_PER_VHOST = 8;

/**
 * Probes every target, one connection per target vhost, and returns one result per target in the
 * order given. A vhost that does not exist, or that the broker refuses the login or access to, is
 * a conflict for each of its targets; a queue that cannot be probed is a conflict for itself.
 * Throws TransientError when the broker cannot be reached at all. Every connection is closed.
 */
export async function preflightTargets(amqpUrl: string, targets: PreflightTarget[], mode: RestoreMode): Promise<PreflightResult[]> {
  const results = new Map<PreflightTarget, PreflightResult>();
  const byVhost = new Map<string, PreflightTarget[]>();
  for (const target of targets) {
    const inVhost = byVhost.get(target.vhost);
    if (inVhost) inVhost.push(target);
    else byVhost.set(target.vhost, [target]);
  }

  for (const [vhost, inVhost] of byVhost) {
    const url = amqpUrlForVhost(amqpUrl, vhost);
    let connection: ChannelModel;
    try {
      connection = await amqp.connect(url, amqpSocketOptions(url, { clientProperties: { connection_name: 'tidemark restore preflight' } }));
    } catch (err) {
      const refused = refusedConnection(err, vhost, url);
      if (refused === undefined) {
        throw new TransientError(`cannot reach the target broker ${redactUrl(url)} to check the restore's targets: ${errorMessage(err)}; nothing was restored`, {
          cause: err,
        });
      }
      for (const target of inVhost) results.set(target, { target, exists: false, holdsMessages: false, conflict: refused });
      continue;
    }
    // A connection-level failure also rejects the pending calls, which report it per target.
    connection.on('error', () => {});
    try {
      await forEachLimited(inVhost, PROBES_PER_VHOST, async (target) => {
        results.set(target, await preflightOne(connection, target, mode));
      });
    } finally {
      await connection.close().catch(() => {});
    }
  }
  return targets.map((target) => results.get(target)!);
}

async function preflightOne(connection: ChannelModel, target: PreflightTarget, mode: RestoreMode): Promise<PreflightResult> {
  const queue = `${target.vhost}/${target.name}`;
  const type = target.definition.type || 'classic';
  let exists: boolean;
  let holdsMessages: boolean;
  try {
    ({ exists, holdsMessages } = await probeQueue(connection, target.name, type));
  } catch (err) {
    const conflict = `cannot check target queue ${queue}: ${errorMessage(err)}. Nothing was published; fix access to it, or restore under another name (--prefix/--map)`;
    return { target, exists: false, holdsMessages: false, conflict };
  }
  const result = { target, exists, holdsMessages, conflict: '' };
  // A missing target is declared by the restore in every mode; one this restore already
  // published into is expected to exist and hold its messages.
  if (!exists || mode === 'append') return result;
  const reasons: string[] = [];
  if (mode === 'refuse') {
    if (!target.started) {
      const holding = holdsMessages ? 'holds messages' : 'is empty';
      reasons.push(
        `target queue ${queue} already exists (it ${holding}) and --mode refuse restores only into queues that do not exist yet. ` +
          'Restore under another name (--prefix/--map), delete it, or use --mode recreate (into an empty queue with the same arguments) or --mode append',
      );
    }
  } else {
    if (holdsMessages && !target.started) {
      reasons.push(
        `target queue ${queue} already holds messages; restoring into it would add the checkpoint's messages after them, duplicating any it already has. ` +
          'Restore under another name (--prefix/--map), delete or purge it, or pass --mode append to add them anyway',
      );
    }
    let differs: string | undefined;
    try {
      differs = await argumentsConflict(connection, target.name, queueDeclareOptions(target.definition));
    } catch (err) {
      differs = errorMessage(err);
    }
    if (differs !== undefined) {
      reasons.push(
        `target queue ${queue} exists with other flags or arguments than the checkpoint's ${type} queue (the broker says: ${differs}). ` +
          'Restore under another name (--prefix/--map), delete it so it is declared like the source, or pass --mode append to publish into it as it is',
      );
    }
  }
  if (reasons.length > 0) result.conflict = `${reasons.join('; ')}. Nothing was published to it`;
  return result;
}

/**
 * The conflict to report when the broker refused the connection itself (missing vhost, login or
 * access refused); undefined when it could not be reached at all.
 */
function refusedConnection(err: unknown, vhost: string, url: string): string | undefined {
  const message = errorMessage(err);
  const broker = redactUrl(url);
  if (/ACCESS.REFUSED/.test(message)) {
    return `the target broker ${broker} refused the login (${message}): check the user and password of the target AMQP URL; nothing was published`;
  }
  // The broker closes the handshake instead of opening a vhost that is missing or not allowed.
  if (/ConnectionOpenOk|NOT.ALLOWED/.test(message)) {
    return (
      `vhost "${vhost}" does not exist on the target broker ${broker}, or the user may not use it: ` +
      'create it and grant the user permissions there, or restore into another --target-vhost; nothing was published'
    );
  }
  return undefined;
}
