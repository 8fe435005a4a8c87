/**
 * Shows a verify's event stream: one JSON object per line with --json; otherwise one line per
 * problem and a summary, and on a terminal a progress line redrawn in place. Off a terminal there
 * are no progress lines: a log of the output holds only what needs reading.
 */
import type { VerifyDone, VerifyEvent } from '../gen/tidemark/v1/admin.js';
import { bytes } from './output.js';

export interface VerifyViewOptions {
  /** Print each event as one compact JSON object per line (docs/CLI.md). */
  json: boolean;
  /** Writes one line of output. */
  print: (line: string) => void;
  /** Where the progress line is drawn; drawn only on a terminal. @default none drawn */
  progress?: { write(s: string): void; isTTY: boolean };
}

/** Erases the progress line so the next output starts on a clean line. */
const CLEAR_LINE = '\r\x1b[K';

/** The --json shape of one event: camelCase, with `type` naming the event. */
export function verifyEventJson(event: VerifyEvent) {
  switch (event.event?.$case) {
    case 'progress': {
      const p = event.event.value;
      return { type: 'progress', objectsChecked: p.objectsChecked, objectsTotal: p.objectsTotal, bytesChecked: p.bytesChecked, bytesTotal: p.bytesTotal };
    }
    case 'problem': {
      const p = event.event.value;
      return { type: 'problem', key: p.key || null, vhost: p.vhost || null, queue: p.queue || null, message: p.message };
    }
    case 'done': {
      const d = event.event.value;
      return {
        type: 'done',
        checkpoint: String(d.checkpoint),
        full: d.full,
        manifests: d.manifests,
        segments: d.segments,
        bytes: d.bytes,
        records: d.records,
        problems: d.problems,
        durationMs: d.durationMs,
        encrypted: d.encrypted,
        plaintextManifests: d.plaintextManifests,
        plaintextSegments: d.plaintextSegments,
      };
    }
    default:
      return { type: 'unknown' };
  }
}

/** Consumes the events; returns the done event, or undefined if the stream ended without one. */
export async function renderVerify(events: AsyncIterable<VerifyEvent>, options: VerifyViewOptions): Promise<VerifyDone | undefined> {
  const live = !options.json && options.progress?.isTTY === true ? options.progress : undefined;
  let drawn = false;
  const clear = () => {
    if (drawn) live?.write(CLEAR_LINE);
    drawn = false;
  };
  let done: VerifyDone | undefined;
  for await (const event of events) {
    if (options.json) options.print(JSON.stringify(verifyEventJson(event)));
    const e = event.event;
    if (e?.$case === 'done') done = e.value;
    if (options.json || !e) continue;
    if (e.$case === 'progress') {
      const p = e.value;
      live?.write(`${CLEAR_LINE}  checked ${p.objectsChecked}/${p.objectsTotal} object(s), ${bytes(p.bytesChecked)} of ${bytes(p.bytesTotal)}`);
      drawn = live !== undefined;
    } else if (e.$case === 'problem') {
      clear();
      options.print(problemLine(e.value.vhost, e.value.queue, e.value.key, e.value.message));
    } else {
      clear();
      options.print(summaryLine(e.value));
    }
  }
  clear();
  return done;
}

/** `PROBLEM <vhost>/<queue> <key>: <message>`, leaving out what the problem does not name. */
function problemLine(vhost: string, queue: string, key: string, message: string): string {
  const where = vhost || queue ? `${vhost}/${queue}` : '';
  return `PROBLEM ${[where, key].filter(Boolean).join(' ')}: ${message}`;
}

function summaryLine(d: VerifyDone): string {
  const parts = [`${d.manifests} manifest(s)`, `${d.segments} segment(s)`, bytes(d.bytes)];
  if (d.full) parts.push(`${d.records} record(s) decoded`);
  parts.push(d.problems === 0 ? 'no problems' : `${d.problems} PROBLEM(S)`);
  return `checkpoint ${d.checkpoint} verified: ${parts.join(', ')}; ${protectionOf(d)}`;
}

/** Whether the checkpoint is encrypted and authenticated, and what of its chain is not. */
function protectionOf(d: VerifyDone): string {
  if (!d.encrypted) return 'plaintext: not encrypted, trusted as far as the store is';
  const older = [
    d.plaintextManifests > 0 ? `${d.plaintextManifests} older plaintext manifest(s)` : '',
    d.plaintextSegments > 0 ? `${d.plaintextSegments} plaintext segment(s), authenticated by the manifests' checksums` : '',
  ].filter(Boolean);
  return `encrypted and authenticated${older.length > 0 ? ` (${older.join(', ')})` : ''}`;
}
