/**
 * What a coordinator remembers of checkpoint rounds, for status, metrics and the next round: the
 * rounds it ran and how they ended, the newest committed checkpoint it knows of, and the epoch of
 * its last full checkpoint (when the next round consolidates).
 *
 * - memory only, and per process: a new leader starts its counts at zero, and knows the newest
 *   checkpoint from the store (knownCommit), not from its predecessor;
 * - the newest commit may be one this leader did not run: its predecessor's, or one recovery
 *   finished; metrics read its age from here.
 */
import type { CheckpointManifest } from '../gen/tidemark/v1/store.js';
import { incompleteQueues } from './broker-continuity.js';
import { outsideCutQueues } from './outside-cut.js';
import type { OutsideCutQueue } from '../gen/tidemark/v1/admin.js';
import type { RoundResult } from './round-runner.js';

/** The last round a leader ran, in its own terms (coordinator-status.ts maps it for the admin API). */
export interface LastRound {
  epoch: number;
  outcome: RoundResult['outcome'];
  reason: string;
  startedAtMs: number;
  durationMs: number;
}

/** The newest committed checkpoint a leader knows of. */
export interface LastCommit {
  epoch: number;
  committedAtMs: number;
  /** Queues the checkpoint marks incomplete. */
  incompleteQueues?: number;
  /** Queues the checkpoint carries from older cuts (G8), oldest first. */
  outside?: OutsideCutQueue[];
  /** Messages and body bytes the checkpoint holds over all its queues. */
  messages?: number;
  bodyBytes?: number;
}

export class RoundHistory {
  /** Rounds this coordinator ran, by how they ended. */
  readonly counts = { committed: 0, aborted: 0 };
  last: LastRound | undefined;
  lastCommit: LastCommit | undefined;
  private lastFullEpoch = 0;

  /** Whether round `epoch` writes a full checkpoint: at least every `fullEvery` epochs. */
  consolidates(epoch: number, fullEvery: number): boolean {
    return epoch - this.lastFullEpoch >= fullEvery;
  }

  /** Checkpoint `epoch` is committed (`manifest`), whoever committed it. */
  knownCommit(epoch: number, manifest: CheckpointManifest): void {
    this.lastCommit = {
      epoch,
      committedAtMs: manifest.committedAtMs,
      incompleteQueues: incompleteQueues(manifest).length,
      outside: outsideCutQueues(manifest),
      messages: manifest.queues.reduce((n, q) => n + q.messages, 0),
      bodyBytes: manifest.queues.reduce((n, q) => n + q.bodyBytes, 0),
    };
  }

  /** A round of this coordinator committed; `manifest` is absent if its write is left to recovery. */
  committed(epoch: number, manifest: CheckpointManifest | undefined): void {
    this.counts.committed += 1;
    if (manifest?.full) this.lastFullEpoch = epoch;
    if (manifest) this.knownCommit(epoch, manifest);
  }

  aborted(): void {
    this.counts.aborted += 1;
  }
}
