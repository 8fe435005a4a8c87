/**
 * Encryption's cost (issue 14): throughput with a master key configured ÷ without, for capture
 * and for restore, measured side by side in one run against the same stream and broker.
 *
 * Capture: the stream is filled once per size (as capture-efficiency.ts fills it), then each
 * repetition runs the worker's real QueueCapture over it twice, in alternating order: into a
 * fresh plain local store, and into a fresh store opened with a master key (every segment and the
 * data key sealed as a worker with TIDEMARK_MASTER_KEY seals them). Same timing as
 * capture_efficiency: from attach until fence 2's prefix is durable.
 *
 * Restore: the worker's real runRestoreTask of fence 1's prefix from each side's last capture
 * (the encrypted one opens and authenticates every segment, in its verification pass and again
 * as it publishes), alternating, timed as restore_efficiency times it.
 *
 * Prints `ratio encryption_cost capture-<size>` and `restore-<size>`: encrypted ÷ plain medians.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { RestoreStateStore } from '../../services/core/state/restore-state.js';
import type { Vault } from '../../services/core/crypto/vault.js';
import type { ObjectStore } from '../../services/core/store/object-store.js';
import { checkJournalBudget, codecCounts, log, now, pairOrder, rateText, spread, TARGETS, type BenchContext, type MessageSize, type Ratio } from './bench-kit.js';
import { fillStream, tidemarkCapture, type CapturedQueue } from './capture-efficiency.js';
import { deleteQueues, tidemarkRestore, type Target } from './restore-efficiency.js';

type Side = 'plain' | 'encrypted';

/** The same store, adding the time its vault spends opening segments to `spent`. */
function timedOpen(store: ObjectStore, spent: { ms: number }): ObjectStore {
  const vault = store.vault!;
  const open: Vault['open'] = async (bytes, purpose, key) => {
    const started = now();
    try {
      return await vault.open(bytes, purpose, key);
    } finally {
      spent.ms += now() - started;
    }
  };
  return {
    url: store.url,
    // The restore path calls only open.
    vault: { open } as Pick<Vault, 'open'> as Vault,
    get: (key, options) => store.get(key, options),
    put: (key, body) => store.put(key, body),
    has: (key) => store.has(key),
    list: (prefix) => store.list(prefix),
    listObjects: (prefix) => store.listObjects(prefix),
    delete: (key) => store.delete(key),
    close: () => store.close(),
  };
}

export async function measureEncryption(ctx: BenchContext, target: Target, namespace: string, size: MessageSize, redis: Redis): Promise<Ratio[]> {
  const count = ctx.counts.capture[size.label];
  checkJournalBudget('encryption', size, count);
  const stream = await fillStream(target.url, namespace, size, count, Math.min(ctx.counts.restore[size.label], count));
  // A fresh key for the run, never written anywhere but the stores' own wrapped data keys.
  const masterKey = randomBytes(32).toString('hex');
  const kept: Partial<Record<Side, { dir: string; captured: CapturedQueue }>> = {};
  const forget = async (side: Side) => {
    const k = kept[side];
    if (!k) return;
    delete kept[side];
    await k.captured.store.close();
    rmSync(k.dir, { recursive: true, force: true });
  };
  const done = ctx.cleanUps.add(`encryption bench stores of ${size.label}`, async () => {
    await forget('plain');
    await forget('encrypted');
  });
  try {
    const capture = { plain: [] as number[], encrypted: [] as number[], paired: [] as number[] };
    /** Time spent sealing segments ÷ the capture's time: encryption's own share, whatever the host's noise. */
    const sealShare: number[] = [];
    for (let rep = 0; rep <= ctx.reps; rep += 1) {
      const rate: Partial<Record<Side, number>> = {};
      const flushed: Partial<Record<Side, string>> = {};
      for (const side of pairOrder<Side>(rep, 'plain', 'encrypted')) {
        const dir = mkdtempSync(join(tmpdir(), `tm-bench-enc-${side}-`));
        try {
          const { ms, captured, flushes } = await tidemarkCapture(stream, ctx, dir, side === 'encrypted' ? masterKey : undefined);
          await forget(side);
          kept[side] = { dir, captured };
          rate[side] = (count * 1000) / ms;
          flushed[side] = `${flushes.put.calls} segments (${codecCounts(flushes.codec.picked)}), encode+compress ${Math.round(flushes.codec.total.ms)} ms, ${side === 'encrypted' ? `seal ${Math.round(flushes.seal.ms)} ms, ` : ''}put ${Math.round(flushes.put.ms)} ms`;
          if (side === 'encrypted' && rep > 0) sealShare.push(flushes.seal.ms / ms);
        } catch (err) {
          rmSync(dir, { recursive: true, force: true });
          throw err;
        }
      }
      log(`encryption capture ${size.label} ${rep === 0 ? 'warm-up' : `rep ${rep}/${ctx.reps}`}: encrypted ${Math.round(rate.encrypted!)}/s [${flushed.encrypted}], plain ${Math.round(rate.plain!)}/s [${flushed.plain}]`);
      if (rep === 0) continue;
      capture.plain.push(rate.plain!);
      capture.encrypted.push(rate.encrypted!);
      capture.paired.push(rate.encrypted! / rate.plain!);
    }

    const state = new RestoreStateStore(redis, namespace);
    const restore = { plain: [] as number[], encrypted: [] as number[], paired: [] as number[] };
    const messages = kept.plain!.captured.entry.messages;
    /** Time spent opening (decrypting, authenticating) segments ÷ the encrypted restore's time. */
    const openShare: number[] = [];
    for (let rep = 0; rep <= ctx.reps; rep += 1) {
      const rate: Partial<Record<Side, number>> = {};
      const names = { plain: `enc-plain-${size.label.toLowerCase()}-${rep}`, encrypted: `enc-sealed-${size.label.toLowerCase()}-${rep}` };
      try {
        for (const side of pairOrder<Side>(rep, 'plain', 'encrypted')) {
          const opening = { ms: 0 };
          const captured = kept[side]!.captured;
          const run = await tidemarkRestore(ctx, side === 'encrypted' ? { ...captured, store: timedOpen(captured.store, opening) } : captured, target, names[side], state);
          rate[side] = (messages * 1000) / run.ms;
          if (side === 'encrypted' && rep > 0) openShare.push(opening.ms / run.ms);
        }
      } finally {
        await deleteQueues(target.url, Object.values(names));
      }
      log(`encryption restore ${size.label} ${rep === 0 ? 'warm-up' : `rep ${rep}/${ctx.reps}`}: encrypted ${Math.round(rate.encrypted!)}/s, plain ${Math.round(rate.plain!)}/s`);
      if (rep === 0) continue;
      restore.plain.push(rate.plain!);
      restore.encrypted.push(rate.encrypted!);
      restore.paired.push(rate.encrypted! / rate.plain!);
    }

    const ratio = (what: 'capture' | 'restore', rates: typeof capture, detail: string): Ratio => {
      const encrypted = spread(rates.encrypted);
      const plain = spread(rates.plain);
      return {
        name: 'encryption_cost',
        label: `${what}-${size.label}`,
        value: encrypted.median / plain.median,
        target: TARGETS.encryption_cost,
        detail: `encrypted ${rateText(encrypted)}, plain ${rateText(plain)}; ${detail}, AES-256-GCM, ${ctx.reps} reps`,
        paired: spread(rates.paired),
      };
    };
    return [
      ratio('capture', capture, `${count} messages; sealing took ${(100 * spread(sealShare).median).toFixed(1)}% of the encrypted capture's time`),
      ratio('restore', restore, `${messages} messages, every segment opened twice (verify, publish), opening took ${(100 * spread(openShare).median).toFixed(1)}% of the encrypted restore's time`),
    ];
  } finally {
    await done();
  }
}
