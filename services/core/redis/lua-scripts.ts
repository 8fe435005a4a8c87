/**
 * The Lua scripts Tidemark runs inside Redis, one file each under scripts/ (the build copies them
 * next to this module). Each file says what its KEYS and ARGV are and what it returns. The
 * simulation runs the same files (test/sim/redis.ts), so what it checks is what Redis executes.
 */
import { readFileSync } from 'node:fs';

function script(file: string): string {
  return readFileSync(new URL(`./scripts/${file}`, import.meta.url), 'utf8');
}

export const REDIS_SCRIPTS = {
  acquireLease: script('acquire-lease.lua'),
  renewLease: script('renew-lease.lua'),
  releaseLease: script('release-lease.lua'),
  nextEpoch: script('next-epoch.lua'),
  recordDecision: script('record-decision.lua'),
  advanceRestore: script('advance-restore.lua'),
  markRestoreStarted: script('mark-restore-started.lua'),
} as const;

export type RedisScriptName = keyof typeof REDIS_SCRIPTS;
