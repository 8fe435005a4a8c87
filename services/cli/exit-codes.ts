/**
 * The tidemark command's exit codes: 0 success; 1 failure; 2 bad usage or configuration; 3 a
 * checkpoint round aborted, a restore finished with failed queues (or a dry run found conflicts),
 * verify found problems, or a drill did not reconcile; 130 interrupted (Ctrl-C).
 */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_INCOMPLETE = 3;
/** Ctrl-C, as shells report it (128 + SIGINT). */
export const EXIT_INTERRUPTED = 130;

/** Thrown by a command to end the run with `code` and no further message (it printed its own). */
export class ExitCode extends Error {
  override readonly name = 'ExitCode';

  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}
