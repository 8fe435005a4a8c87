/**
 * Checks shared by the tests of deploy/kubernetes and docker-compose.yml: the mistakes that a
 * schema does not catch but that break an installation at start-up.
 */
import { environmentKeys } from '../../services/core/infrastructure/config.js';

/**
 * TIDEMARK_* variables read outside config.ts's env table, each with where it is read. Anything
 * else must be a setting of the table: a misspelt variable is silently ignored by Tidemark.
 */
export const VARIABLES_OUTSIDE_THE_TABLE: Readonly<Record<string, string>> = {
  TIDEMARK_CONFIG: 'the JSON config file, read by loadConfig (services/core/infrastructure/config.ts)',
  TIDEMARK_TOKEN: "a client's admin token (services/client/credentials.ts)",
  TIDEMARK_TOKEN_FILE: "a client's admin token file (services/client/credentials.ts)",
};

/** The names among `names` that start with TIDEMARK_ and are no setting Tidemark reads. */
export function unknownSettings(names: Iterable<string>): string[] {
  return [...names].filter((name) => name.startsWith('TIDEMARK_') && !Object.hasOwn(environmentKeys, name) && !Object.hasOwn(VARIABLES_OUTSIDE_THE_TABLE, name));
}

/**
 * Why an image reference is not pinned to one version, or undefined when it is: a digest, or a
 * tag other than `latest` (an exact version: the tag names one release, e.g. 3.13.7-management).
 */
export function unpinnedImage(image: string): string | undefined {
  if (/@sha256:[0-9a-f]{64}$/.test(image)) return undefined;
  const lastPart = image.slice(image.lastIndexOf('/') + 1);
  const colon = lastPart.indexOf(':');
  if (colon < 0) return `image "${image}" has no tag: it runs whatever "latest" is on the day it is pulled`;
  const tag = lastPart.slice(colon + 1);
  if (tag === 'latest') return `image "${image}" uses the floating tag "latest"`;
  // 3.13.7-management, 20.20.2-bookworm-slim, RELEASE.2025-04-22T22-12-26Z; not 7 or 3.13.
  if (!/(^|[^.\d])\d+\.\d+\.\d+([^.\d]|$)|^RELEASE\.\d{4}-\d{2}-\d{2}T/.test(tag)) {
    return `image "${image}": tag "${tag}" names a version line, not one release; give the exact version (e.g. 7.4.2)`;
  }
  return undefined;
}
