/**
 * `tidemark token create`: makes an admin API token for one caller (docs/SECURITY.md#who-may-do-what).
 * The token goes to a new owner-only file, never to stdout; stdout gets the line for the
 * coordinator's tokens file, which holds only the token's hash.
 */
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { CALLER_NAME, ConfigError, errorMessage, generateToken, hashToken, isRole, ROLES, tokenLine } from '../../core/index.js';
import type { CliContext } from '../context.js';

export function addTokenCommands(program: Command, cli: CliContext): void {
  program
    .command('token')
    .description('admin API tokens (subcommand: create)')
    .command('create')
    .description('write a new token to --out (owner-only) and print its tokens-file line (the hash)')
    .requiredOption('--role <role>', `${ROLES.join(', ')}`)
    .requiredOption('--name <name>', 'the caller, as logs and errors show it')
    .requiredOption('--out <file>', 'new file to write the token to (refused if it exists)')
    .option('--json', 'print JSON')
    .action((flags: { role: string; name: string; out: string; json?: boolean }) => {
      if (!isRole(flags.role)) throw new ConfigError(`--role must be one of ${ROLES.join(', ')}, not "${flags.role}"`);
      // The name as the coordinator's tokens file takes it.
      if (!CALLER_NAME.test(flags.name)) throw new ConfigError('--name must be 1-64 letters, digits and . _ @ : -');
      const token = generateToken();
      const line = tokenLine(flags.role, flags.name, token);
      try {
        writeFileSync(flags.out, `${token}\n`, { mode: 0o600, flag: 'wx' });
      } catch (err) {
        throw new ConfigError(`cannot create the token file ${flags.out}: ${errorMessage(err)}; no token was made`, { cause: err });
      }
      if (flags.json) cli.printJson({ role: flags.role, name: flags.name, sha256: hashToken(token).toString('hex'), tokenFile: flags.out, tokensFileLine: line });
      else {
        cli.print(line);
        cli.warn(`token written to ${flags.out}; add the line above to the coordinator's TIDEMARK_AUTH_TOKENS_FILE and restart it, and give the caller TIDEMARK_TOKEN_FILE=${flags.out}`);
      }
    });
}
