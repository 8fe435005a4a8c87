import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalKeyProvider, masterKeyId, parseKey } from '../../services/core/crypto/key-provider.js';
import { KEYS_PREFIX, Vault, isSealed, sealedKeyId } from '../../services/core/crypto/vault.js';
import { KeyUnavailableError, UnauthenticatedDataError } from '../../services/core/errors.js';
import { LocalStore } from '../../services/core/store/local-store.js';

describe('Vault', () => {
  let dir: string;
  let store: LocalStore;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tidemark-vault-'));
    store = new LocalStore(dir, { fsync: false });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('seals with a fresh nonce every time, and every sealing opens to the plaintext', async () => {
    const vault = new Vault(store, new LocalKeyProvider(randomBytes(32)));
    const plain = randomBytes(200 * 1024 + 5); // several cipher slices, not a whole number of blocks
    const a = await vault.seal(plain, 'segment');
    const b = await vault.seal(plain, 'segment');
    const nonce = (x: Buffer) => x.subarray(10 + sealedKeyId(x)!.length, 22 + sealedKeyId(x)!.length).toString('hex');
    expect(nonce(b)).not.toBe(nonce(a));
    expect(b.equals(a)).toBe(false);
    expect(a.length).toBe(10 + sealedKeyId(a)!.length + 12 + plain.length + 16);
    expect((await vault.open(a, 'segment', 'k')).equals(plain)).toBe(true);
    expect((await vault.open(b, 'segment', 'k')).equals(plain)).toBe(true);
    expect(isSealed(a)).toBe(true);
    expect(sealedKeyId(a)).toMatch(/^dk-\d{8}-[0-9a-f]{16}$/);
    expect(sealedKeyId(b)).toBe(sealedKeyId(a));
    expect(await store.list(KEYS_PREFIX)).toEqual([`${KEYS_PREFIX}${sealedKeyId(a)}.key`]);
  });

  it('refuses an object opened as another purpose, one with an altered header, and one whose data key id was swapped', async () => {
    const vault = new Vault(store, new LocalKeyProvider(randomBytes(32)));
    const sealed = await vault.seal(Buffer.from('cut metadata'), 'partition');
    expect((await vault.open(sealed, 'partition', 'k')).toString()).toBe('cut metadata');
    await expect(vault.open(sealed, 'checkpoint', 'k')).rejects.toThrow(UnauthenticatedDataError);
    const nonceFlipped = Buffer.from(sealed);
    nonceFlipped[8 + 2 + sealedKeyId(sealed)!.length] ^= 1;
    await expect(vault.open(nonceFlipped, 'partition', 'k')).rejects.toThrow(/failed authentication/);
    const forgedId = Buffer.from(sealed);
    forgedId.write('../', 8 + 2, 'latin1');
    await expect(vault.open(forgedId, 'partition', 'k')).rejects.toThrow(/impossible data key id/);
    await expect(vault.open(Buffer.from('TMSEAL01'), 'partition', 'k')).rejects.toThrow(/not a sealed object/);
  });

  it('makes a new data key once the current one is a day old, and reads objects of both', async () => {
    let now = Date.parse('2026-12-06T10:00:00Z');
    const vault = new Vault(store, new LocalKeyProvider(randomBytes(32)), { now: () => now });
    const first = await vault.seal(Buffer.from('one'), 'segment');
    now += 86_400_000;
    const second = await vault.seal(Buffer.from('two'), 'segment');
    expect(sealedKeyId(first)).toMatch(/^dk-20261206-/);
    expect(sealedKeyId(second)).toMatch(/^dk-20261207-/);
    expect((await store.list(KEYS_PREFIX)).length).toBe(2);
    const reader = new Vault(store, vault.provider);
    expect((await reader.open(first, 'segment', 'a')).toString()).toBe('one');
    expect((await reader.open(second, 'segment', 'b')).toString()).toBe('two');
  });

  it('rotation reports a data key whose master key is not configured, leaving it as it was', async () => {
    const old = randomBytes(32);
    const sealed = await new Vault(store, new LocalKeyProvider(old)).seal(Buffer.from('x'), 'segment');
    const keyObject = await store.get(`${KEYS_PREFIX}${sealedKeyId(sealed)}.key`);
    const report = await new Vault(store, new LocalKeyProvider(randomBytes(32))).rotate();
    expect(report.rewrapped).toBe(0);
    expect(report.failed).toHaveLength(1);
    expect(report.failed[0]).toMatchObject({ id: sealedKeyId(sealed), masterKeyId: masterKeyId(old) });
    expect((await store.get(`${KEYS_PREFIX}${sealedKeyId(sealed)}.key`)).equals(keyObject)).toBe(true);
    const err = await new Vault(store, new LocalKeyProvider(randomBytes(32))).open(sealed, 'segment', 'k').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeyUnavailableError);
  });
});

describe('parseKey', () => {
  it('takes 32 bytes as hex or base64 and refuses anything else without echoing it', () => {
    const key = randomBytes(32);
    expect(parseKey(key.toString('hex'), 'x').equals(key)).toBe(true);
    expect(parseKey(`${key.toString('base64')}\n`, 'x').equals(key)).toBe(true);
    const short = randomBytes(31).toString('base64');
    expect(() => parseKey(short, 'TIDEMARK_MASTER_KEY')).toThrow(/TIDEMARK_MASTER_KEY does not hold a 32-byte key/);
    try {
      parseKey(short, 'TIDEMARK_MASTER_KEY');
    } catch (err) {
      expect((err as Error).message).not.toContain(short);
    }
  });
});
