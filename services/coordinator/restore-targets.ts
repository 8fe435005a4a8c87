/**
 * Restore targets named in configuration (TIDEMARK_RESTORE_TARGETS, docs/SECURITY.md#restore-targets):
 * the brokers the operator role may restore into, besides the source broker. A JSON file:
 *
 *     { "dr-east": { "amqpUrl": "amqps://tidemark@dr-east.example:5671",
 *                    "passwordFile": "/run/secrets/dr-east-amqp" } }
 *
 * The URL carries no password (one that does is refused); the password comes from `passwordFile`
 * (read at each use, so a rotated file takes effect without a restart) or from the environment
 * variable `passwordEnv` names (read once, at start-up). Restore records in Redis keep the
 * target's name, never its URL with a password.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError, errorMessage } from '../core/index.js';
import { hasPassword, redactUrl, withPassword } from '../core/amqp/index.js';

export const TARGET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const targetSchema = z
  .object({
    /** amqp:// or amqps:// URL of the broker, with the user but no password. */
    amqpUrl: z.string(),
    /** File whose first line is the password. */
    passwordFile: z.string().optional(),
    /** Environment variable holding the password. */
    passwordEnv: z.string().optional(),
  })
  .strict();

interface RestoreTarget {
  name: string;
  amqpUrl: string;
  passwordFile?: string;
  /** The password taken from passwordEnv at start-up. */
  envPassword?: string;
}

export class RestoreTargets {
  private constructor(private readonly targets: ReadonlyMap<string, RestoreTarget>) {}

  static none(): RestoreTargets {
    return new RestoreTargets(new Map());
  }

  /** Reads and checks the targets file; `env` is where passwordEnv variables are read. */
  static load(path: string | undefined, env: NodeJS.ProcessEnv): RestoreTargets {
    if (!path) return RestoreTargets.none();
    const where = `restore targets file ${path} (TIDEMARK_RESTORE_TARGETS)`;
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(path, 'utf8'));
    } catch (err) {
      throw new ConfigError(`cannot read the ${where}: ${errorMessage(err)}; nothing was started`, { cause: err });
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`the ${where} must hold a JSON object of target name → target; nothing was started`);
    const targets = new Map<string, RestoreTarget>();
    for (const [name, value] of Object.entries(raw)) {
      if (!TARGET_NAME.test(name)) throw new ConfigError(`${where}: the target name ${JSON.stringify(name)} must be 1-64 letters, digits and . _ -; nothing was started`);
      const parsed = targetSchema.safeParse(value);
      if (!parsed.success) {
        throw new ConfigError(`${where}: target ${name}: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'value'} ${i.message}`).join('; ')}; nothing was started`);
      }
      const { amqpUrl, passwordFile, passwordEnv } = parsed.data;
      let protocol = '';
      try {
        protocol = new URL(amqpUrl).protocol;
      } catch {
        // Not echoed: it may hold a password.
      }
      if (protocol !== 'amqp:' && protocol !== 'amqps:') throw new ConfigError(`${where}: target ${name}: amqpUrl must be an amqp:// or amqps:// URL; nothing was started`);
      if (hasPassword(amqpUrl)) {
        throw new ConfigError(`${where}: target ${name}: amqpUrl holds a password; remove it from the URL and put it in passwordFile or passwordEnv; nothing was started`);
      }
      if (passwordFile && passwordEnv) throw new ConfigError(`${where}: target ${name}: give passwordFile or passwordEnv, not both; nothing was started`);
      let envPassword: string | undefined;
      if (passwordEnv) {
        envPassword = env[passwordEnv];
        if (!envPassword) throw new ConfigError(`${where}: target ${name}: the environment variable ${passwordEnv} (passwordEnv) is not set; nothing was started`);
      }
      targets.set(name, { name, amqpUrl, passwordFile, envPassword });
      // A file that cannot be read is found now, not in the middle of a disaster.
      if (passwordFile) readPassword(passwordFile, name);
    }
    return new RestoreTargets(targets);
  }

  names(): string[] {
    return [...this.targets.keys()].sort();
  }

  has(name: string): boolean {
    return this.targets.has(name);
  }

  /** The target's URL as it may be shown: no password. */
  describe(name: string): string {
    return redactUrl(this.get(name).amqpUrl);
  }

  /** The target's URL with its password: for connecting only, never to store or print. */
  url(name: string): string {
    const target = this.get(name);
    const password = target.passwordFile ? readPassword(target.passwordFile, name) : target.envPassword;
    return password === undefined ? target.amqpUrl : withPassword(target.amqpUrl, password);
  }

  private get(name: string): RestoreTarget {
    const target = this.targets.get(name);
    if (!target) {
      const known = this.names();
      throw new ConfigError(
        `restore target ${JSON.stringify(name)} is not configured on the coordinator; ${known.length > 0 ? `configured targets: ${known.join(', ')}` : 'none are (TIDEMARK_RESTORE_TARGETS)'}; nothing was restored`,
      );
    }
    return target;
  }
}

function readPassword(path: string, target: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read the password file ${path} of restore target ${target}: ${errorMessage(err)}`, { cause: err });
  }
  const password = text.split(/\r?\n/)[0];
  if (password === '') throw new ConfigError(`the password file ${path} of restore target ${target} is empty`);
  return password;
}
