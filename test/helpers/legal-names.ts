/**
 * Seeded names across what RabbitMQ accepts for a vhost or queue: any UTF-8 of 1 to 255 bytes.
 * Lengths lean towards the edges (1 byte, around the journal and file-name budgets, 255 bytes),
 * characters mix ASCII, the characters paths and URLs treat specially, multi-byte scripts, emoji
 * and characters next to the control range. One seed gives the same names every run.
 */
import { utf8Prefix } from '../../services/core/format/bounded-name.js';
import { Random } from '../sim/random.js';

export { Random };

/** Pieces names are built from (a piece may be several characters). */
export const NAME_PIECES: readonly string[] = [
  'a', 'Z', '0', '-', '_', '=', '.', '..', '/', '%', '%2F', '%2E', ' ', '~', '*', "'", '(', '+', '#', '?', '&', ':',
  '\u007f', '\u0080', '\u0085', '\u00a0', '\u00ad', '\u200b', '\u200d', '\ufeff', '\t',
  'é', 'e\u0301', 'ß', '中', '文', '字', '東京', 'ع', 'ر', 'ب', 'ي', 'ة', 'א', 'Ж', 'ह',
  '😀', '🚀', '👩‍💻', '🇫🇷', '𝄞',
];

/** Names every run covers as they are. */
export const EDGE_NAMES: readonly string[] = ['.', '..', '%2F', '/', ' ', '~', '😀', '\u007f', '\u200b'];

/** A byte length, 1..255, leaning towards the limits that matter. */
export function nameLength(random: Random): number {
  return random.pick([
    () => random.int(1, 3),
    () => random.int(4, 64),
    () => random.int(65, 200),
    () => random.int(200, 240),
    () => random.int(225, 240),
    () => random.int(245, 255),
    () => 255,
  ])();
}

/** A name of `bytes` UTF-8 bytes or a few fewer (it is cut between characters), never empty. */
export function legalName(random: Random, bytes: number): string {
  let name = '';
  while (Buffer.byteLength(name) < bytes) name += random.pick(NAME_PIECES);
  name = utf8Prefix(name, bytes);
  // A cut right after a zero-width joiner or inside a piece is still valid UTF-8; pad with ASCII.
  while (Buffer.byteLength(name) < bytes) name += 'x';
  return name;
}

/** `count` distinct names of random lengths. */
export function legalNames(random: Random, count: number): string[] {
  const names = new Set<string>();
  while (names.size < count) names.add(legalName(random, nameLength(random)));
  return [...names];
}
