/**
 * Which queues Tidemark protects: TIDEMARK_PROTECT, comma-separated `vhost:glob` patterns.
 *
 * - `vhost:glob` includes the queues of vhost(s) matching `vhost` whose names match `glob`.
 * - `!vhost:glob` excludes them; an exclude wins over any include.
 * - A pattern without ':' means vhost `/`. The split is at the first ':', so a queue glob that
 *   itself contains ':' needs its vhost spelled out (`/:bull:*`).
 * - Whitespace around entries is trimmed, empty entries are ignored; commas inside `{a,b}` braces
 *   belong to the glob, not the list.
 * - Tidemark's own queues (`<namespace>.*`) never match, whatever the patterns say, and neither
 *   does any queue of a restore-drill scratch vhost (`tidemark-drill-*`).
 *
 * Glob semantics ({@link globMatcher}; picomatch, applied to whole names): a queue or vhost name has no path
 * structure, so '/' and '.' are ordinary characters. `*` matches any run of characters
 * (including '.', '/' and a leading '.'), `?` exactly one, `[...]` a class, `{a,b}` alternatives,
 * `\` escapes. `orders.*` matches `orders.eu.1`; `*` matches `a/b` and `.hidden`. A leading '!'
 * inside a glob is literal (negation is only the entry-level '!').
 */
import picomatch from 'picomatch';
import { ConfigError } from '../errors.js';
import { isOwnObject } from '../format/names.js';

/**
 * Name prefix of the scratch vhosts `tidemark restore-drill` restores into. The protection policy
 * never covers them: a drill's copy must not be journaled and captured into later checkpoints.
 */
export const DRILL_VHOST_PREFIX = 'tidemark-drill-';

/** True for a restore-drill scratch vhost. */
export function isDrillVhost(vhost: string): boolean {
  return vhost.startsWith(DRILL_VHOST_PREFIX);
}

/** One parsed TIDEMARK_PROTECT entry. */
export interface ProtectPattern {
  /** The entry as written, for messages. */
  source: string;
  exclude: boolean;
  vhost: string;
  queue: string;
}

interface CompiledPattern extends ProtectPattern {
  vhostMatch: (name: string) => boolean;
  queueMatch: (name: string) => boolean;
}

export class ProtectionPolicy {
  readonly patterns: readonly ProtectPattern[];
  private readonly includes: CompiledPattern[];
  private readonly excludes: CompiledPattern[];

  constructor(
    spec: string,
    readonly namespace: string,
  ) {
    const compiled = parseProtectSpec(spec).map(compile);
    this.patterns = compiled.map(({ source, exclude, vhost, queue }) => ({ source, exclude, vhost, queue }));
    this.includes = compiled.filter((p) => !p.exclude);
    this.excludes = compiled.filter((p) => p.exclude);
  }

  /** The distinct vhost globs of the include patterns: the vhosts discovery must look at. */
  vhostPatterns(): string[] {
    return [...new Set(this.includes.map((p) => p.vhost))];
  }

  /** True if some include pattern could select queues of this vhost (never a drill's scratch vhost). */
  coversVhost(vhost: string): boolean {
    // A drill restores a checkpoint into a scratch vhost and then deletes it. Covering it would
    // journal the restored copy and put it into later checkpoints, and its journals would hold
    // the vhost while the drill tries to delete it. `*:*` must not reach it either.
    if (isDrillVhost(vhost)) return false;
    return this.includes.some((p) => p.vhostMatch(vhost));
  }

  /** True if the queue is protected: some include matches, no exclude does, and it is not ours. */
  matches(vhost: string, queue: string): boolean {
    if (isOwnObject(this.namespace, queue) || isDrillVhost(vhost)) return false;
    const hit = (p: CompiledPattern) => p.vhostMatch(vhost) && p.queueMatch(queue);
    return this.includes.some(hit) && !this.excludes.some(hit);
  }
}

/** Parse a TIDEMARK_PROTECT value; throws ConfigError naming a malformed entry. */
export function parseProtectSpec(spec: string): ProtectPattern[] {
  const patterns: ProtectPattern[] = [];
  for (const raw of splitEntries(spec)) {
    const source = raw.trim();
    if (source === '') continue;
    const exclude = source.startsWith('!');
    const body = exclude ? source.slice(1).trim() : source;
    const colon = body.indexOf(':');
    const vhost = colon < 0 ? '/' : body.slice(0, colon).trim();
    const queue = colon < 0 ? body : body.slice(colon + 1).trim();
    if (vhost === '' || queue === '') {
      const missing = vhost === '' ? 'vhost' : 'queue glob';
      throw new ConfigError(
        `TIDEMARK_PROTECT entry "${source}" has an empty ${missing}; write vhost:glob (e.g. "/:orders.*"), or !vhost:glob to exclude`,
      );
    }
    patterns.push({ source, exclude, vhost, queue });
  }
  return patterns;
}

/** Split at commas outside `{...}` and `[...]`, honouring '\' escapes. */
function splitEntries(spec: string): string[] {
  const entries: string[] = [];
  let braces = 0;
  let bracket = false;
  let current = '';
  for (let i = 0; i < spec.length; i++) {
    const c = spec[i];
    if (c === '\\' && i + 1 < spec.length) {
      current += c + spec[++i];
      continue;
    }
    if (bracket) {
      if (c === ']') bracket = false;
    } else if (c === '[') {
      bracket = true;
    } else if (c === '{') {
      braces++;
    } else if (c === '}' && braces > 0) {
      braces--;
    } else if (c === ',' && braces === 0) {
      entries.push(current);
      current = '';
      continue;
    }
    current += c;
  }
  if (braces > 0 || bracket) {
    throw new ConfigError(`TIDEMARK_PROTECT entry "${current.trim()}" has an unclosed ${bracket ? "'['" : "'{'"}`);
  }
  entries.push(current);
  return entries;
}

// picomatch treats '/' as a path separator that `*` and `?` never cross. Names are not paths, so
// '/' is swapped for a control character (in glob and name alike) that picomatch treats as an
// ordinary character. It never lets a wildcard match a whole name of '.' or '..' either (a path's
// dot segments): glob and name alike start with another such character, so no name is one.
const SLASH_STANDIN = '\u0001';
const HEAD = '\u0002';
const GLOB_OPTIONS: picomatch.PicomatchOptions = { dot: true, nonegate: true };

/**
 * A matcher for one whole-name glob with the semantics above (shared by restore's `--queues`).
 * `source` is the text the glob came from, for the ConfigError an invalid glob throws.
 */
export function globMatcher(glob: string, source: string = glob): (name: string) => boolean {
  let test: picomatch.Matcher;
  try {
    test = picomatch(HEAD + glob.replaceAll('/', SLASH_STANDIN), GLOB_OPTIONS);
  } catch (err) {
    throw new ConfigError(`invalid glob "${glob}" in "${source}"`, { cause: err });
  }
  return (name) => test(HEAD + name.replaceAll('/', SLASH_STANDIN));
}

function compile(p: ProtectPattern): CompiledPattern {
  return { ...p, vhostMatch: globMatcher(p.vhost, p.source), queueMatch: globMatcher(p.queue, p.source) };
}
