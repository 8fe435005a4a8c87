/**
 * Names Tidemark derives from vhost, queue and worker names (journal streams, store key parts)
 * must fit limits the source names do not: a 255-byte queue name plus a prefix is longer than a
 * queue name may be, and its percent-encoding longer than a file name may be. A derived name that
 * does not fit takes a digest form: a readable prefix of the name, `~`, and the lowercase hex
 * sha256 of the whole name (its UTF-8 bytes). The digest keeps the form stable and distinct.
 *
 * A derived name is in digest form exactly when it ends in `~` and 32 or 64 lowercase hex digits;
 * a name that would end so as it is takes the digest form too, so no readable name can ever equal
 * another name's digest form.
 */
import { createHash } from 'node:crypto';

/** Hex digits of the digest in a digest form. */
export const DIGEST_HEX_LENGTH = 64;

/** Hex digits of a shortened digest, where the full one does not fit (still 128 bits). */
export const SHORT_DIGEST_HEX_LENGTH = 32;

const DIGEST_SUFFIX = /~(?:[0-9a-f]{32}|[0-9a-f]{64})$/;

/** Lowercase hex sha256 of `name`'s UTF-8 bytes. */
export function nameDigest(name: string): string {
  return createHash('sha256').update(name, 'utf8').digest('hex');
}

/** True when `derived` ends the way a digest form does: `~` and 32 or 64 lowercase hex digits. */
export function endsLikeDigest(derived: string): boolean {
  return DIGEST_SUFFIX.test(derived);
}

/** The longest prefix of `text` of at most `maxBytes` UTF-8 bytes, cut between characters. */
export function utf8Prefix(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  let bytes = 0;
  let end = 0;
  for (const ch of text) {
    const size = Buffer.byteLength(ch);
    if (bytes + size > maxBytes) break;
    bytes += size;
    end += ch.length;
  }
  return text.slice(0, end);
}
