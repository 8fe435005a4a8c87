/**
 * Where a client finds its admin API token (docs/SECURITY.md#who-may-do-what), first found wins:
 * TIDEMARK_TOKEN, the file TIDEMARK_TOKEN_FILE names, then `.tidemark/admin-token` in the working
 * directory (written by `tidemark cluster up`). Never a command-line flag: argv is visible to
 * every user of the machine.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { readTokenFile } from '../core/client-side/index.js';

/** The token file `tidemark cluster up` writes, relative to the working directory. */
export const DEFAULT_TOKEN_FILE = '.tidemark/admin-token';

/** The token to send, or undefined when none is configured. */
export function tokenFromEnvironment(env: NodeJS.ProcessEnv, cwd = process.cwd()): string | undefined {
  const token = env.TIDEMARK_TOKEN?.trim();
  if (token) return token;
  if (env.TIDEMARK_TOKEN_FILE) return readTokenFile(env.TIDEMARK_TOKEN_FILE);
  const local = resolve(cwd, DEFAULT_TOKEN_FILE);
  return existsSync(local) ? readTokenFile(local, `${DEFAULT_TOKEN_FILE}, written by "tidemark cluster up"`) : undefined;
}
