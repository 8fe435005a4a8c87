/** `checkpoint` (take one now) and `checkpoints list|show|prune|delete` (the catalog of visible checkpoints). */
import type { Command } from 'commander';
import { ConfigError, contentsMessages, storedSegmentCount } from '../../core/index.js';
import { RoundOutcome } from '../../client/index.js';
import type { CliContext } from '../context.js';
import { EXIT_INCOMPLETE, ExitCode } from '../exit-codes.js';
import { bytes, checkpointJson, manifestJson, outcomeName, pruneJson, summaryJson, table } from '../output.js';

export function addCheckpointCommands(program: Command, cli: CliContext): void {
  const { print, printJson } = cli;
  program
    .command('checkpoint')
    .description('take a checkpoint now')
    .option('--wait', 'wait until the round is decided')
    .option('--json', 'print JSON')
    .action(async (flags) => {
      const c = cli.client();
      try {
        const reply = await c.checkpoint(Boolean(flags.wait));
        if (flags.json) printJson(checkpointJson(reply));
        else if (reply.outcome === RoundOutcome.ROUND_OUTCOME_COMMITTED) print(`checkpoint ${reply.epoch} committed in ${reply.durationMs} ms`);
        else if (reply.outcome === RoundOutcome.ROUND_OUTCOME_PENDING && !flags.wait) print(`checkpoint ${reply.epoch} started`);
        else if (reply.outcome === RoundOutcome.ROUND_OUTCOME_PENDING) {
          // COMMIT was decided but this leader could not make it visible; the next leader settles it.
          cli.warn(`checkpoint ${reply.epoch} is in doubt: ${reply.reason}; the next leader finishes or aborts it`);
        } else cli.warn(`checkpoint ${reply.epoch} ${outcomeName(reply.outcome)}: ${reply.reason}`);
        const settled = reply.outcome === RoundOutcome.ROUND_OUTCOME_COMMITTED || (reply.outcome === RoundOutcome.ROUND_OUTCOME_PENDING && !flags.wait);
        if (!settled) throw new ExitCode(EXIT_INCOMPLETE);
      } finally {
        c.close();
      }
    });

  const checkpoints = program.command('checkpoints').description('the catalog of visible checkpoints');
  checkpoints
    .command('list')
    .description('list visible checkpoints, oldest first')
    .option('--json', 'print JSON')
    .action(async (flags) => {
      const c = cli.client();
      try {
        const list = await c.listCheckpoints();
        if (flags.json) return printJson({ checkpoints: list.map(summaryJson) });
        if (list.length === 0) return print('no checkpoints yet');
        print(
          table([
            ['ID', 'COMMITTED', 'QUEUES', 'MESSAGES', 'SIZE', 'KIND', 'INCOMPLETE', 'OUTSIDE CUT'],
            ...list.map((s) => [
              String(s.epoch),
              new Date(s.committedAtMs).toISOString(),
              String(s.queues),
              String(s.messages),
              bytes(s.bodyBytes),
              s.full ? 'full' : `incremental on ${s.parentEpoch}`,
              s.incompleteQueues > 0 ? `${s.incompleteQueues} queue(s)` : '-',
              s.outsideQueues > 0 ? `${s.outsideQueues} queue(s)` : '-',
            ]),
          ]),
        );
      } finally {
        c.close();
      }
    });
  checkpoints
    .command('show <id>')
    .description('show one checkpoint (an id or "latest")')
    .option('--json', 'print JSON')
    .action(async (id: string, flags) => {
      const c = cli.client();
      try {
        const m = await c.getCheckpoint(id);
        if (flags.json) return printJson(manifestJson(m));
        print(`checkpoint ${m.epoch} committed ${new Date(m.committedAtMs).toISOString()} (${m.full ? 'full' : `incremental on ${m.parentEpoch}`}), ${m.messages} messages, ${bytes(m.bodyBytes)}`);
        print(
          table([
            ['VHOST', 'QUEUE', 'TYPE', 'HELD', 'HISTORY', 'SIZE', 'CUT', 'SEGMENTS', 'STATE'],
            ...m.queues.map((q) => [
              q.definition!.vhost,
              q.definition!.name,
              q.definition!.type,
              q.headKnown ? String(contentsMessages(q)) : 'unknown',
              String(q.messages),
              bytes(q.bodyBytes),
              String(q.cutOffset),
              String(storedSegmentCount(q.segments)),
              [
                q.outsideCut ? `OUTSIDE CUT (from ${q.outsideCut.sinceEpoch})` : '',
                q.incomplete.length > 0 ? 'POSSIBLY INCOMPLETE' : q.predating > 0 ? 'INCOMPLETE CONTENTS' : 'complete',
              ]
                .filter(Boolean)
                .join(', '),
            ]),
          ]),
        );
        print('HELD: messages in the queue at the cut (a contents restore; for a stream, what its own retention kept); HISTORY: everything captured up to the cut (restore --history)');
        const predating = m.queues.filter((q) => q.predating > 0);
        if (predating.length > 0) {
          print(`INCOMPLETE CONTENTS: ${predating.length} queue(s) still held messages from before protection began, which were never captured:`);
          for (const q of predating) print(`  ${q.definition!.vhost}/${q.definition!.name}: about ${q.predating} message(s) missing until consumers take them`);
        }
        const unknown = m.queues.filter((q) => !q.headKnown);
        if (unknown.length > 0) {
          print(`HISTORY ONLY: ${unknown.length} queue(s) have no safe head, so a restore of them restores their history:`);
          for (const q of unknown) print(`  ${q.definition!.vhost}/${q.definition!.name}: ${q.headBasis.replace(/^history: /, '') || 'checkpoint taken before heads existed'}`);
        }
        const outside = m.queues.filter((q) => q.outsideCut);
        if (outside.length > 0) {
          print(
            `OUTSIDE THE CUT: ${outside.length} queue(s) could not take part in this checkpoint's round; each is carried from its last good cut, ` +
              'so restoring it gives an older state than the other queues (docs/OPERATIONS.md#queues-outside-the-cut):',
          );
          for (const q of outside) {
            const o = q.outsideCut!;
            print(`  ${q.definition!.vhost}/${q.definition!.name}: as of checkpoint ${o.sinceEpoch}, outside since ${new Date(o.sinceMs).toISOString()}: ${o.reason}`);
          }
        }
        const marked = m.queues.filter((q) => q.incomplete.length > 0);
        if (marked.length > 0) {
          print(`POSSIBLY INCOMPLETE: ${marked.length} queue(s) may lack messages the broker confirmed (docs/OPERATIONS.md#possibly-incomplete-queues):`);
          for (const q of marked) {
            for (const mark of q.incomplete) print(`  ${q.definition!.vhost}/${q.definition!.name}: after offset ${mark.afterOffset}, marked in checkpoint ${mark.epoch}: ${mark.reason}`);
          }
        }
      } finally {
        c.close();
      }
    });
  checkpoints
    .command('prune')
    .description('apply the retention policy now, then delete what no kept checkpoint needs')
    .option('--dry-run', 'say what would be deleted; delete nothing')
    .option('--json', 'print JSON')
    .action(async (flags) => {
      const c = cli.client();
      try {
        const report = await c.pruneCheckpoints(Boolean(flags.dryRun));
        if (flags.json) return printJson(pruneJson(report));
        const verb = report.dryRun ? 'would delete' : 'deleted';
        print(`${report.deleted.length === 0 ? 'no checkpoint' : `${verb} checkpoint(s) ${report.deleted.join(', ')}`}; kept ${report.kept.length}`);
        print(`${verb} ${report.segmentsDeleted} segment(s) and ${report.stagedDeleted} staged partition(s), ${bytes(report.bytesFreed)}`);
        if (report.sweepSkipped) print(`segments not swept: ${report.sweepSkipped}`);
        print(table([['ID', 'KEPT BECAUSE'], ...report.kept.map((k) => [String(k.epoch), k.reasons.join(', ')])]));
      } finally {
        c.close();
      }
    });
  checkpoints
    .command('delete <id>')
    .description('delete one checkpoint (refused while it is protected: latest, verified, in use by a restore, a base of another)')
    .option('--json', 'print JSON')
    .action(async (id: string, flags) => {
      const epoch = Number(id);
      if (!/^\d+$/.test(id.trim()) || !Number.isSafeInteger(epoch) || epoch <= 0) throw new ConfigError(`"${id}" is not a checkpoint id: give an epoch number (see "tidemark checkpoints list"); nothing was deleted`);
      const c = cli.client();
      try {
        await c.deleteCheckpoint(epoch);
        if (flags.json) return printJson({ deleted: epoch });
        print(`checkpoint ${epoch} deleted; the objects only it needed go at the next prune`);
      } finally {
        c.close();
      }
    });
}
