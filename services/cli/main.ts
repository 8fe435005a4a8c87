/**
 * The `tidemark` executable (bin/tidemark.js imports it; `cluster up` spawns it): runs the
 * command line (program.ts) on this process's arguments and exits with its code.
 *
 * Services (coordinator, worker) stop cleanly on SIGINT/SIGTERM at any moment, also while they
 * start, and exit 0; see runService (commands/services.ts) for the time limit and the second
 * signal.
 */
import { run } from './program.js';

// `tidemark ... | head` closes stdout early: that is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
});
process.exitCode = await run(process.argv.slice(2));
