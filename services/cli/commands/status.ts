/** `status`: the coordinator, workers, protected queues, coverage and the latest checkpoint. */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { bytes, statusJson, table } from '../output.js';

/** Queues at least this many seconds behind their journal are listed (a busy queue is always a flush or so behind). */
const LAG_LISTED_SECONDS = 5;

export function addStatusCommand(program: Command, cli: CliContext): void {
  const { print, printJson } = cli;
  program
    .command('status')
    .description('coordinator, workers, protected queues and the latest checkpoint')
    .option('--json', 'print JSON')
    .action(async (flags) => {
      const c = cli.client();
      try {
        const s = await c.status();
        if (flags.json) return printJson(statusJson(s));
        const j = statusJson(s);
        const leads = j.leader ? '' : `; leader: ${j.leaderId ?? 'none right now'}${j.leaderAddress ? ` at ${j.leaderAddress}` : ''}`;
        print(`coordinator ${j.coordinator} (${j.leader ? 'leader' : 'standby'}, token ${j.leaderToken}${leads}), store ${j.store}`);
        print(`protected queues: ${j.protectedQueues}; latest checkpoint: ${j.latestCheckpoint ? `${j.latestCheckpoint.id} at ${j.latestCheckpoint.committedAt}` : 'none'}`);
        print(`rounds: ${j.rounds.committed} committed, ${j.rounds.aborted} aborted${j.lastRound ? `; last ${j.lastRound.epoch} ${j.lastRound.outcome}${j.lastRound.reason ? `: ${j.lastRound.reason}` : ''}` : ''}`);
        if (j.journalBoundBytes) print(`journal retention: each journal keeps at most ${bytes(j.journalBoundBytes)}`);
        if (j.journalPressure) print(`DISK PRESSURE: ${j.journalPressure}; journals are shrunk, then the largest are no longer protected (docs/OPERATIONS.md#journal-retention)`);
        print(
          j.workers.length === 0
            ? 'workers: none'
            : table([
                ['WORKER', 'ADDRESS', 'QUEUES', 'LAG', 'HEALTH'],
                ...j.workers.map((w) => [w.id, w.address, String(w.queues), w.reachable ? lag(w.lagMessages, w.maxLagSeconds) : '-', w.error ? w.error : w.reachable ? 'ok' : 'unreachable']),
              ]),
        );
        const behind = j.captureLag.filter((q) => q.lagSeconds >= LAG_LISTED_SECONDS);
        if (behind.length > 0) {
          print(`CAPTURE LAG: ${behind.length} queue(s) are ${LAG_LISTED_SECONDS} s or more behind their journals; what is not durable is in no checkpoint yet (docs/OPERATIONS.md#capture-lag)`);
          print(table([['VHOST', 'QUEUE', 'WORKER', 'BEHIND'], ...behind.map((q) => [q.vhost, q.queue, q.worker, lag(q.lagMessages, q.lagSeconds)])]));
        }
        if (j.coverageGaps.length > 0) {
          print(`COVERAGE GAPS: ${j.coverageGaps.length} queue(s) receive messages their journals do not (see REASON); checkpoints do not hold them`);
          print(
            table([
              ['VHOST', 'QUEUE', 'PUBLISHED', 'CAPTURED', 'UNCAPTURED', 'SINCE', 'REASON'],
              ...j.coverageGaps.map((g) => [g.vhost, g.queue, String(g.sourcePublished), String(g.captured), String(g.uncaptured), g.since ?? '-', g.reason]),
            ]),
          );
        }
        if (j.outsideCut.length > 0) {
          print(
            `OUTSIDE THE CUT: the latest checkpoint carries ${j.outsideCut.length} queue(s) from an older cut: they could not take part in its round, ` +
              'and their recovery point is ageing (docs/OPERATIONS.md#queues-outside-the-cut)',
          );
          print(
            table([
              ['VHOST', 'QUEUE', 'AS OF CHECKPOINT', 'OUTSIDE SINCE', 'REASON'],
              ...j.outsideCut.map((q) => [q.vhost, q.queue, String(q.sinceEpoch), q.since ?? '', q.reason]),
            ]),
          );
        }
        if (j.incompleteQueues.length > 0) {
          print(
            `POSSIBLY INCOMPLETE: the latest checkpoint marks ${j.incompleteQueues.length} queue(s) whose journals may lack messages the broker confirmed; ` +
              'compare them with their source queues before relying on a restore (docs/OPERATIONS.md#possibly-incomplete-queues)',
          );
          print(
            table([
              ['VHOST', 'QUEUE', 'SINCE CHECKPOINT', 'DETECTED', 'MARKS'],
              ...j.incompleteQueues.map((q) => [q.vhost, q.queue, String(q.sinceEpoch), q.detectedAt ?? '', String(q.marks)]),
            ]),
          );
        }
        const predating = j.contentsQueues.filter((q) => q.predating > 0);
        if (predating.length > 0) {
          print(`INCOMPLETE CONTENTS: ${predating.length} queue(s) still hold messages from before protection began, never captured (they leave as consumers take them):`);
          print(table([['VHOST', 'QUEUE', 'NOT CAPTURED'], ...predating.map((q) => [q.vhost, q.queue, `about ${q.predating}`])]));
        }
        const unknown = j.contentsQueues.filter((q) => !q.headKnown);
        if (unknown.length > 0) {
          print(`HISTORY ONLY: ${unknown.length} queue(s) have no safe head; a restore of them restores their history:`);
          print(table([['VHOST', 'QUEUE', 'WHY'], ...unknown.map((q) => [q.vhost, q.queue, q.reason.replace(/^history: /, '')])]));
        }
        if (j.firehose.length > 0) {
          print(
            table([
              ['FIREHOSE VHOST', 'RELAYED BY', 'STANDBY', 'BACKLOG'],
              ...j.firehose.map((f) => [f.vhost, f.error ?? f.activeWorker ?? 'nobody (no worker holds its queues?)', f.standbyWorkers.join(',') || '-', String(f.backlog)]),
            ]),
          );
        }
        if (j.unprotectedCount > 0) {
          // One reason per distinct cause: the reasons of one pass repeat for every waiting queue.
          const reasons = [...new Set(j.unprotected.map((u) => u.reason))];
          print(`NOT PROTECTED: ${j.unprotectedCount} selected queue(s) have no journal and no checkpoints (the broker has no room): ${reasons.join('; ')}`);
          print(
            table([
              ['VHOST', 'QUEUE'],
              ...j.unprotected.map((u) => [u.vhost, u.queue]),
              ...(j.unprotectedCount > j.unprotected.length ? [['...', `and ${j.unprotectedCount - j.unprotected.length} more`]] : []),
            ]),
          );
        }
        if (j.leader && j.coverageUnchecked > 0) {
          // A leader of an older version does not say how long (0): the sentence then says "a while".
          const idle = s.coverageSettleMs > 0 ? `${s.coverageSettleMs / 1000} s` : 'a while';
          print(`coverage: ${j.coverageUnchecked} queue(s) not checked yet (a queue is checked once it has been idle for ${idle} since this leader began watching)`);
        }
      } finally {
        c.close();
      }
    });
}

/** "120 msgs, 14.2 s": offsets not yet durable and how long the oldest has waited; "0" when caught up. */
function lag(messages: number, seconds: number): string {
  return messages === 0 ? '0' : `${messages} msgs, ${seconds.toFixed(1)} s`;
}
