/**
 * How `tidemark verify` shows its events: the documented --json shapes, and plain output that is
 * one line per problem and a summary, with a progress line only on a terminal.
 */
import { describe, expect, it } from 'vitest';
import { renderVerify, verifyEventJson } from '../../services/cli/verify-view.js';
import type { VerifyDone, VerifyEvent, VerifyProblem, VerifyProgress } from '../../services/gen/tidemark/v1/admin.js';

const KEY = 'segments/prod/orders/00000000000000000010-00000000000000000019-0123456789abcdef.seg';

const progress = (value: VerifyProgress): VerifyEvent => ({ event: { $case: 'progress', value } });
const problem = (value: VerifyProblem): VerifyEvent => ({ event: { $case: 'problem', value } });
const done = (value: Partial<VerifyDone> = {}): VerifyEvent => ({
  event: { $case: 'done', value: { checkpoint: 12, full: true, manifests: 3, segments: 40, bytes: 1_258_291, records: 5000, problems: 0, durationMs: 850, encrypted: false, plaintextManifests: 3, plaintextSegments: 40, ...value } },
});

const missing = problem({ key: KEY, vhost: 'prod', queue: 'orders', message: 'segment is missing' });
const stream = [progress({ objectsChecked: 0, objectsTotal: 40, bytesChecked: 0, bytesTotal: 1_258_291 }), missing, progress({ objectsChecked: 40, objectsTotal: 40, bytesChecked: 1_258_291, bytesTotal: 1_258_291 }), done({ problems: 1 })];

async function* eventsOf(events: VerifyEvent[]): AsyncGenerator<VerifyEvent> {
  yield* events;
}

/** Renders `events`, returning the printed lines, what went to the progress writer, and the result. */
async function render(events: VerifyEvent[], json: boolean, isTTY: boolean) {
  const lines: string[] = [];
  let drawn = '';
  const result = await renderVerify(eventsOf(events), { json, print: (line) => lines.push(line), progress: { isTTY, write: (s) => (drawn += s) } });
  return { lines, drawn, result };
}

describe('verifyEventJson', () => {
  it('gives each event its documented camelCase shape with a type', () => {
    expect(verifyEventJson(stream[0])).toEqual({ type: 'progress', objectsChecked: 0, objectsTotal: 40, bytesChecked: 0, bytesTotal: 1_258_291 });
    expect(verifyEventJson(missing)).toEqual({ type: 'problem', key: KEY, vhost: 'prod', queue: 'orders', message: 'segment is missing' });
    expect(verifyEventJson(done())).toEqual({
      type: 'done',
      checkpoint: '12',
      full: true,
      manifests: 3,
      segments: 40,
      bytes: 1_258_291,
      records: 5000,
      problems: 0,
      durationMs: 850,
      encrypted: false,
      plaintextManifests: 3,
      plaintextSegments: 40,
    });
  });

  it('gives null, not "", for what a problem does not name', () => {
    expect(verifyEventJson(problem({ key: '', vhost: '', queue: '', message: 'manifest gone' }))).toMatchObject({ key: null, vhost: null, queue: null });
    expect(verifyEventJson({ event: undefined })).toEqual({ type: 'unknown' });
  });
});

describe('renderVerify', () => {
  it('with --json prints every event as one compact object per line and draws nothing', async () => {
    const { lines, drawn, result } = await render(stream, true, true);
    expect(lines.map((line) => JSON.parse(line).type)).toEqual(['progress', 'problem', 'progress', 'done']);
    expect(lines.every((line) => !line.includes('\n') && line === JSON.stringify(JSON.parse(line)))).toBe(true);
    expect(drawn).toBe('');
    expect(result?.problems).toBe(1);
  });

  it('off a terminal prints only problems and the summary', async () => {
    const { lines, drawn, result } = await render(stream, false, false);
    expect(lines).toEqual([
      `PROBLEM prod/orders ${KEY}: segment is missing`,
      'checkpoint 12 verified: 3 manifest(s), 40 segment(s), 1.2 MiB, 5000 record(s) decoded, 1 PROBLEM(S); plaintext: not encrypted, trusted as far as the store is',
    ]);
    expect(drawn).toBe('');
    expect(result).toEqual((done({ problems: 1 }).event as { value: VerifyDone }).value);
  });

  it('on a terminal redraws one progress line in place and erases it before each printed line', async () => {
    const order: string[] = [];
    await renderVerify(eventsOf(stream), {
      json: false,
      print: (line) => order.push(`print ${line.split(' ')[0]}`),
      progress: { isTTY: true, write: (s) => order.push(s.startsWith('\r\x1b[K  ') ? 'draw' : s === '\r\x1b[K' ? 'erase' : `? ${s}`) },
    });
    expect(order).toEqual(['draw', 'erase', 'print PROBLEM', 'draw', 'erase', 'print checkpoint']);
    const { drawn } = await render(stream.slice(0, 1), false, true);
    expect(drawn).toBe('\r\x1b[K  checked 0/40 object(s), 0 B of 1.2 MiB\r\x1b[K');
  });

  it('says "no problems", and leaves out records when the check did not decode them', async () => {
    const { lines } = await render([done({ full: false, records: 0, segments: 2, bytes: 900, manifests: 1 })], false, false);
    expect(lines).toEqual(['checkpoint 12 verified: 1 manifest(s), 2 segment(s), 900 B, no problems; plaintext: not encrypted, trusted as far as the store is']);
  });

  it('says whether the checkpoint is encrypted and authenticated, and what of its chain is plaintext', async () => {
    const sealed = await render([done({ problems: 0, encrypted: true, plaintextManifests: 0, plaintextSegments: 0 })], false, false);
    expect(sealed.lines[0]).toMatch(/; encrypted and authenticated$/);
    const mixed = await render([done({ problems: 0, encrypted: true, plaintextManifests: 1, plaintextSegments: 7 })], false, false);
    expect(mixed.lines[0]).toMatch(/; encrypted and authenticated \(1 older plaintext manifest\(s\), 7 plaintext segment\(s\), authenticated by the manifests' checksums\)$/);
    const json = await render([done({ encrypted: true, plaintextManifests: 1, plaintextSegments: 7 })], true, false);
    expect(JSON.parse(json.lines[0])).toMatchObject({ type: 'done', encrypted: true, plaintextManifests: 1, plaintextSegments: 7 });
  });

  it('names only what a problem names, and returns undefined for a stream cut off before done', async () => {
    const { lines, result } = await render(
      [problem({ key: 'checkpoints/00000000000000000012.manifest', vhost: '', queue: '', message: 'corrupt' }), problem({ key: '', vhost: 'prod', queue: 'orders', message: 'gap' })],
      false,
      false,
    );
    expect(lines).toEqual(['PROBLEM checkpoints/00000000000000000012.manifest: corrupt', 'PROBLEM prod/orders: gap']);
    expect(result).toBeUndefined();
  });
});
