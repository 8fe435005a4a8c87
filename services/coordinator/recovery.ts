/**
 * What a new leader does before its first round (step 4 of the protocol):
 * - presumed abort: an epoch that was started but never decided is recorded as aborted;
 * - a committed epoch whose manifest is missing (its leader died between recording COMMIT and
 *   writing the manifest) is finished: the manifest is rebuilt from the commit record and the
 *   partition manifests the YES voters staged, each checked against the checksum it voted with.
 */
import { createHash } from 'node:crypto';
import type { Catalog } from '../core/catalog.js';
import { CorruptDataError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { checkpointKey, decodePartition } from '../core/store/keys.js';
import type { ObjectStore } from '../core/store/object-store.js';
import { assembleManifest } from './checkpoint-round.js';
import type { DecisionLog, DecisionRecord } from './decision-log.js';

export interface RecoveryContext {
  decisions: DecisionLog;
  catalog: Catalog;
  store: ObjectStore;
  /** Lease holder string and token of the new leader, for fenced writes. */
  holder: string;
  leaderToken: number;
  log: Logger;
}

export interface RecoveryReport {
  presumedAborted: number[];
  finished: number[];
  /** Committed epochs that could not be finished (staged data missing or corrupt): never visible. */
  unfinishable: number[];
}

export async function recoverRounds(context: RecoveryContext): Promise<RecoveryReport> {
  const report: RecoveryReport = { presumedAborted: [], finished: [], unfinishable: [] };
  for (const record of await context.decisions.all()) {
    if (record.state === 'started') {
      await context.decisions.record(context.holder, {
        ...record,
        state: 'aborted',
        reason: 'presumed abort: the leader changed before the round was decided',
        leaderToken: context.leaderToken,
        atMs: Date.now(),
      });
      report.presumedAborted.push(record.epoch);
    } else if (record.state === 'committed' && record.commit && !(await context.store.has(checkpointKey(record.epoch)))) {
      try {
        await finish(context, record);
        report.finished.push(record.epoch);
        context.log.warn(`finished checkpoint ${record.epoch}: its leader recorded COMMIT but died before writing the manifest`);
      } catch (err) {
        report.unfinishable.push(record.epoch);
        context.log.error(`checkpoint ${record.epoch} was committed but cannot be made visible: ${errorMessage(err)}; later checkpoints do not depend on it`);
      }
    }
  }
  return report;
}

async function finish(context: RecoveryContext, record: DecisionRecord): Promise<void> {
  const commit = record.commit!;
  const partitions = await Promise.all(
    commit.partitions.map(async (p) => {
      const bytes = await context.store.get(p.key);
      const actual = createHash('sha256').update(bytes).digest('hex');
      if (actual !== p.sha256) {
        throw new CorruptDataError(`staged partition ${p.key} of worker ${p.workerId} has sha256 ${actual}, but the worker voted with ${p.sha256}`, p.key);
      }
      const partition = await decodePartition(bytes, p.key);
      return { workerId: p.workerId, queues: partition.queues };
    }),
  );
  await context.catalog.publish(assembleManifest(record.epoch, commit, record.atMs, partitions));
}
