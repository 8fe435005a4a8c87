/**
 * Takes a checkpoint, lists the checkpoints, then restores the new one's queues under a name
 * prefix and follows the restore to its end (docs/CLIENT.md). Configured like the tidemark CLI:
 *
 *   TIDEMARK_COORDINATOR=localhost:7700 TIDEMARK_TLS_CA=tls/ca.pem TIDEMARK_TOKEN_FILE=ops.token \
 *     node checkpoint-and-restore.js restored.
 *
 * The argument is the prefix of the restored queues' names (default "restored."). Exits 1 when
 * the checkpoint is not committed or the restore does not end "done".
 */
import { clientTlsFromFiles, RoundOutcome, TidemarkClient, TidemarkError, tokenFromEnvironment } from '@tidemark/client';

const env = process.env;
const prefix = process.argv[2] ?? 'restored.';

const client = new TidemarkClient(env.TIDEMARK_COORDINATOR ?? 'localhost:7700', {
  // TLS with the coordinator's CA, and a client certificate if you have one; plaintext only for
  // a development coordinator started with TIDEMARK_TLS=off.
  tls: env.TIDEMARK_TLS === 'off' ? { enabled: false } : clientTlsFromFiles({ ca: env.TIDEMARK_TLS_CA, cert: env.TIDEMARK_TLS_CERT, key: env.TIDEMARK_TLS_KEY }),
  // TIDEMARK_TOKEN, else the file TIDEMARK_TOKEN_FILE names: never a command-line argument.
  token: tokenFromEnvironment(env),
});

try {
  const round = await client.checkpoint(true);
  if (round.outcome !== RoundOutcome.ROUND_OUTCOME_COMMITTED) {
    console.error(`checkpoint ${round.epoch} was not committed: ${round.reason}`);
    process.exitCode = 1;
  } else {
    console.log(`checkpoint ${round.epoch} committed in ${round.durationMs} ms`);

    const checkpoints = await client.listCheckpoints();
    const taken = checkpoints.find((c) => c.epoch === round.epoch);
    console.log(`${checkpoints.length} checkpoint(s) listed; ${round.epoch} holds ${taken?.messages ?? 0} message(s) of ${taken?.queues ?? 0} queue(s)`);

    // followRestore reconnects by restore id if the coordinator changes mid-restore.
    for await (const { event } of client.followRestore({ request: { checkpoint: String(round.epoch), prefix } })) {
      if (event?.$case === 'plan') {
        console.log(`restore ${event.value.restoreId}: ${event.value.messages} message(s) into ${event.value.queues.length} queue(s)`);
      } else if (event?.$case === 'progress' && event.value.done) {
        console.log(`  ${event.value.sourceQueue} -> ${event.value.targetQueue}: ${event.value.confirmed}/${event.value.total}${event.value.error ? ` (${event.value.error})` : ''}`);
      } else if (event?.$case === 'done') {
        console.log(`restore ${event.value.restoreId} ${event.value.state}: ${event.value.messages} message(s), ${event.value.queues} queue(s), ${event.value.failedQueues} failed`);
        if (event.value.state !== 'done') process.exitCode = 1;
      }
    }
  }
} catch (err) {
  // Every failure of a call is a TidemarkError subclass (UnauthenticatedError, PermissionDeniedError,
  // TransientError, ...) with a message saying what to do.
  if (!(err instanceof TidemarkError)) throw err;
  console.error(`${err.name}: ${err.message}`);
  process.exitCode = 1;
} finally {
  client.close();
}
