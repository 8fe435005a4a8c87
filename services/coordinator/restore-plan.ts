/**
 * Restore planning, pure: which queues of a checkpoint to restore, under which names, into which
 * vhost, and which worker does each. Conflicts and bad selections are found here, before anything
 * is published.
 */
import type { CheckpointManifest, QueueCheckpoint } from '../gen/tidemark/v1/store.js';
import type { NameMapping } from '../gen/tidemark/v1/admin.js';
import { ConfigError, globMatcher, headOf, historyOf, isOwnObject, MAX_QUEUE_NAME_BYTES, queueKey, rendezvousOwner } from '../core/index.js';

export type BindingsMode = 'auto' | 'all' | 'none';

export interface RestoreSelection {
  /** Globs `vhost:glob` or `glob` (any vhost); a leading `!` excludes. Empty: every queue. */
  queues: string[];
  prefix: string;
  map: NameMapping[];
  targetVhost: string;
  /** Source vhost → target vhost; wins over targetVhost for the vhosts it names. */
  vhostMap?: NameMapping[];
  bindings: BindingsMode;
  /** Restore everything captured up to the cut instead of what each queue held at it. */
  history?: boolean;
  /** Tidemark's namespace: target names inside it (its journals, its fence exchange) are refused. @default none checked */
  namespace?: string;
}

/** Which records of a queue's entry a restore publishes: [startOffset, cut). */
export interface RestoreSpan {
  from: 'contents' | 'history';
  /** Why, for people. */
  reason: string;
  startOffset: number;
  messages: number;
  /** Body bytes, estimated pro rata when the span is not the whole history. */
  bodyBytes: number;
  /** The first this many messages may have been acknowledged at the source before the cut. */
  possiblyAcked: number;
}

/**
 * What a restore of `entry` publishes: its contents (from the head) by default, or its history
 * (from where retention left it) when asked, or when no safe head is known.
 */
export function restoreSpan(entry: QueueCheckpoint, history: boolean): RestoreSpan {
  const span = (from: RestoreSpan['from'], reason: string, at: { offset: number; messages: number }, possiblyAcked: number): RestoreSpan => {
    const messages = Math.max(0, entry.messages - at.messages);
    const bodyBytes = entry.messages === 0 ? 0 : Math.round((entry.bodyBytes * messages) / entry.messages);
    return { from, reason, startOffset: at.offset, messages, bodyBytes, possiblyAcked: Math.min(possiblyAcked, messages) };
  };
  const kept = historyOf(entry);
  const historyReason = kept.offset > entry.startOffset ? `history retained from offset ${kept.offset}` : 'everything captured since protection began';
  if (history) return span('history', `--history: ${historyReason}`, kept, 0);
  if (!entry.headKnown) {
    const why = entry.headBasis.replace(/^history: /, '') || 'the checkpoint predates heads';
    return span('history', `no safe head (${why}): ${historyReason}`, kept, 0);
  }
  const head = headOf(entry);
  const predating = entry.predating > 0 ? `; about ${entry.predating} message(s) held before protection began were never captured` : '';
  // A stream's contents are what its own retention (x-max-age, x-max-length-bytes) kept.
  const held = entry.definition?.type === 'stream' ? 'what the stream retained at the cut' : 'what the queue held at the cut';
  return span('contents', `${held}: ${entry.headBasis}${predating}`, head, entry.possiblyAcked);
}

export interface PlannedRestore {
  entry: QueueCheckpoint;
  span: RestoreSpan;
  targetVhost: string;
  targetName: string;
  bind: boolean;
  workerId: string;
}

interface Matcher {
  exclude: boolean;
  vhost?: (v: string) => boolean;
  queue: (q: string) => boolean;
}

function compile(pattern: string): Matcher {
  let text = pattern.trim();
  const exclude = text.startsWith('!');
  if (exclude) text = text.slice(1);
  const colon = text.indexOf(':');
  const vhostGlob = colon >= 0 ? text.slice(0, colon) : undefined;
  const queueGlob = colon >= 0 ? text.slice(colon + 1) : text;
  if (queueGlob === '' || vhostGlob === '') throw new ConfigError(`queue selector "${pattern}" is empty: use "glob" or "vhost:glob"`);
  // Same glob semantics as TIDEMARK_PROTECT: names have no path structure.
  return {
    exclude,
    vhost: vhostGlob === undefined ? undefined : globMatcher(vhostGlob, pattern),
    queue: globMatcher(queueGlob, pattern),
  };
}

export function parseBindingsMode(text: string): BindingsMode {
  const mode = text === '' ? 'auto' : text;
  if (mode !== 'auto' && mode !== 'all' && mode !== 'none') {
    throw new ConfigError(`--bindings must be auto, all or none, not "${text}"`);
  }
  return mode;
}

/**
 * A restore may not publish into names RabbitMQ reserves (`amq.*`), into Tidemark's own objects
 * (its journals would then capture restored messages as if produced), or past RabbitMQ's 255-byte
 * name limit.
 */
function refuseReservedTarget(p: PlannedRestore, namespace: string | undefined): void {
  const source = p.entry.definition!.name;
  const target = `${p.targetVhost}/${p.targetName}`;
  if (p.targetName.startsWith('amq.')) {
    throw new ConfigError(`${source} would restore into ${target}: names starting with "amq." are reserved by RabbitMQ; choose another --map/--prefix; nothing was restored`);
  }
  if (namespace !== undefined && isOwnObject(namespace, p.targetName)) {
    throw new ConfigError(`${source} would restore into ${target}, a name of Tidemark's own objects ("${namespace}." prefix: journals, fences); choose another --map/--prefix; nothing was restored`);
  }
  if (Buffer.byteLength(p.targetName) > MAX_QUEUE_NAME_BYTES) {
    throw new ConfigError(`${source} would restore into a queue name of ${Buffer.byteLength(p.targetName)} bytes; RabbitMQ allows ${MAX_QUEUE_NAME_BYTES}: choose a shorter --map/--prefix; nothing was restored`);
  }
}

export function planRestore(manifest: CheckpointManifest, selection: RestoreSelection, workerIds: string[]): PlannedRestore[] {
  const matchers = selection.queues.filter((q) => q.trim() !== '').map(compile);
  const includes = matchers.filter((m) => !m.exclude);
  const excludes = matchers.filter((m) => m.exclude);
  const hit = (m: Matcher, q: QueueCheckpoint) => (!m.vhost || m.vhost(q.definition!.vhost)) && m.queue(q.definition!.name);
  const chosen = manifest.queues.filter(
    (q) => (includes.length === 0 || includes.some((m) => hit(m, q))) && !excludes.some((m) => hit(m, q)),
  );
  if (chosen.length === 0) {
    throw new ConfigError(
      `no queue of checkpoint ${manifest.epoch} matches ${selection.queues.join(' ') || '(all)'}; it holds ${manifest.queues.length} queue(s): see "tidemark checkpoints show ${manifest.epoch}"`,
    );
  }
  const mapped = new Map<string, string>();
  for (const m of selection.map) {
    if (!m.from || !m.to) throw new ConfigError(`--map needs A=B with both names, got "${m.from}=${m.to}"`);
    mapped.set(m.from, m.to);
  }
  for (const from of mapped.keys()) {
    if (!chosen.some((q) => q.definition!.name === from)) throw new ConfigError(`--map names ${from}, which is not among the selected queues`);
  }
  const vhostMap = new Map<string, string>();
  for (const m of selection.vhostMap ?? []) {
    if (!m.from || !m.to) throw new ConfigError(`--map-vhost needs A=B with both vhost names, got "${m.from}=${m.to}"`);
    vhostMap.set(m.from, m.to);
  }
  if (workerIds.length === 0) throw new ConfigError('no live workers to run the restore: start at least one "tidemark worker"');
  const planned = chosen.map((entry) => {
    const source = entry.definition!;
    const targetName = mapped.get(source.name) ?? `${selection.prefix}${source.name}`;
    const targetVhost = vhostMap.get(source.vhost) ?? (selection.targetVhost || source.vhost);
    const renamed = targetName !== source.name || targetVhost !== source.vhost;
    const bind = selection.bindings === 'all' || (selection.bindings === 'auto' && !renamed);
    const workerId = rendezvousOwner(queueKey(targetVhost, targetName), workerIds)!;
    return { entry, span: restoreSpan(entry, selection.history === true), targetVhost, targetName, bind, workerId };
  });
  for (const p of planned) refuseReservedTarget(p, selection.namespace);
  const targets = new Map<string, string>();
  for (const p of planned) {
    const key = queueKey(p.targetVhost, p.targetName);
    const other = targets.get(key);
    if (other) throw new ConfigError(`${other} and ${p.entry.definition!.name} would both restore into ${p.targetVhost}/${p.targetName}: adjust --map/--prefix`);
    targets.set(key, p.entry.definition!.name);
  }
  return planned;
}
