/** `keys rotate`: re-wrap the store's data keys with the coordinator's current master key (docs/SECURITY.md#key-rotation). */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { EXIT_INCOMPLETE, ExitCode } from '../exit-codes.js';

export function addKeyCommands(program: Command, cli: CliContext): void {
  const { print, printJson } = cli;
  const keys = program.command('keys').description('encryption keys of the store');
  keys
    .command('rotate')
    .description("re-wrap every data key with the coordinator's current master key (no segment is rewritten)")
    .option('--json', 'print JSON')
    .action(async (flags) => {
      const c = cli.client();
      try {
        const reply = await c.rotateKeys();
        if (flags.json) {
          printJson({
            masterKeyId: reply.masterKeyId,
            rewrapped: reply.rewrapped,
            current: reply.current,
            failed: reply.failed.map((f) => ({ dataKeyId: f.dataKeyId, masterKeyId: f.masterKeyId || null, reason: f.reason })),
          });
        } else {
          print(`${reply.rewrapped} data key(s) re-wrapped with master key ${reply.masterKeyId}; ${reply.current} already were`);
          for (const f of reply.failed) print(`NOT ROTATED ${f.dataKeyId}: ${f.reason}`);
        }
        // Some data keys still need an old master key: it must stay configured until they are done.
        if (reply.failed.length > 0) throw new ExitCode(EXIT_INCOMPLETE);
      } finally {
        c.close();
      }
    });
}
