/**
 * Admin API tokens: the roles, the tokens file the coordinator reads (hashes only, never a token),
 * constant-time matching, and reading a caller's token from a file. docs/SECURITY.md#who-may-do-what.
 *
 * Tokens file, one token a line, `#` starts a comment:
 *
 *     <role> <name> <sha256 of the token, hex>      e.g.  operator ci-bot 9f86d08...
 *
 * The name is what logs and errors show of the caller; the token itself is never stored or shown.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError, errorMessage } from '../errors.js';

/** Admin API roles, weakest first: each may do everything the ones before it may. */
export const ROLES = ['read', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export function isRole(text: string): text is Role {
  return (ROLES as readonly string[]).includes(text);
}

/** True when a caller with role `held` may do what needs role `needed`. */
export function roleAllows(held: Role, needed: Role): boolean {
  return ROLES.indexOf(held) >= ROLES.indexOf(needed);
}

/** One configured caller: its name and role, and the sha256 of its token. */
export interface TokenEntry {
  name: string;
  role: Role;
  /** sha256 of the token, 32 bytes. */
  hash: Buffer;
}

/** What a caller's name may be: it is shown in logs and errors. */
export const CALLER_NAME = /^[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}$/;
const HEX_SHA256 = /^(?:sha256:)?([0-9a-f]{64})$/i;

export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** A new random token (256 bits), prefixed so that secret scanners recognise it. */
export function generateToken(): string {
  return `tmk_${randomBytes(32).toString('base64url')}`;
}

/** The tokens file line for `token`: `<role> <name> <sha256 hex>`. */
export function tokenLine(role: Role, name: string, token: string): string {
  return `${role} ${name} ${hashToken(token).toString('hex')}`;
}

/**
 * Parses tokens-file text. A bad line is a ConfigError naming the line number and what is wrong
 * with it, never echoing the line (someone may have pasted a token instead of its hash).
 */
export function parseTokenLines(text: string, source: string): TokenEntry[] {
  const entries: TokenEntry[] = [];
  const names = new Set<string>();
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') return;
    const where = `${source} line ${index + 1}`;
    const fields = line.split(/\s+/);
    if (fields.length !== 3) throw new ConfigError(`${where} must be "<role> <name> <sha256 of the token>" (3 fields, found ${fields.length}); nothing was started`);
    const [role, name, hash] = fields;
    if (!isRole(role)) throw new ConfigError(`${where}: the role must be one of ${ROLES.join(', ')}; nothing was started`);
    if (!CALLER_NAME.test(name)) throw new ConfigError(`${where}: the name must be 1-64 letters, digits and . _ @ : - ; nothing was started`);
    const hex = HEX_SHA256.exec(hash)?.[1];
    if (!hex) {
      throw new ConfigError(
        `${where}: the third field must be the sha256 of the token in hex (64 digits), not the token itself: e.g. printf %s "$TOKEN" | sha256sum; nothing was started`,
      );
    }
    if (names.has(name)) throw new ConfigError(`${where}: the name ${name} is used twice; give each caller its own name; nothing was started`);
    names.add(name);
    entries.push({ name, role, hash: Buffer.from(hex, 'hex') });
  });
  return entries;
}

/** Reads a tokens file; an unreadable or malformed one is a ConfigError. */
export function readTokensFile(path: string): TokenEntry[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read the tokens file ${path} (TIDEMARK_AUTH_TOKENS_FILE): ${errorMessage(err)}; nothing was started`, { cause: err });
  }
  return parseTokenLines(text, `tokens file ${path}`);
}

/**
 * The configured tokens. `match` hashes the presented token and compares it with every entry in
 * constant time, without stopping at the first match, so timing tells nothing about which
 * prefix or which entry was close.
 */
export class TokenTable {
  constructor(readonly entries: readonly TokenEntry[]) {}

  get size(): number {
    return this.entries.length;
  }

  match(token: string): TokenEntry | undefined {
    const presented = hashToken(token);
    let found: TokenEntry | undefined;
    for (const entry of this.entries) {
      if (timingSafeEqual(presented, entry.hash) && found === undefined) found = entry;
    }
    return found;
  }
}

/**
 * Reads a caller's token from a file (TIDEMARK_TOKEN_FILE): the first line, trimmed. The error
 * names the file, never what it holds.
 */
export function readTokenFile(path: string, setting = 'TIDEMARK_TOKEN_FILE'): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read the token file ${path} (${setting}): ${errorMessage(err)}`, { cause: err });
  }
  const token = text.split(/\r?\n/)[0].trim();
  if (token === '') throw new ConfigError(`the token file ${path} (${setting}) is empty: put the token on its first line`);
  return token;
}
