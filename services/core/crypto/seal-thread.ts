/**
 * Sealing large objects on a thread of their own. A worker's event loop reads journal messages;
 * sealing a 4 MiB segment there (HMAC and AES-GCM over every byte) stalls that reading for
 * milliseconds per segment. On a second thread the same work runs beside it, at the same CPU
 * cost: the plaintext is moved to the thread, not copied, and the sealed bytes are moved back.
 *
 * One thread per process, shared by every Vault, started on first use and not keeping the process
 * alive. If it cannot be started or fails, sealing falls back to the calling thread.
 */
import { Worker } from 'node:worker_threads';

/** What the thread needs to seal one object; the same steps as Vault.seal (vault.ts). */
export interface SealJob {
  /** The header up to (not including) the nonce: magic, algorithm, id length, data key id. */
  headerStart: Buffer;
  cipherKey: Buffer;
  nonceKey: Buffer;
  /** Bound into the tag after the header. */
  purpose: string;
  nonceBytes: number;
  tagBytes: number;
  sliceBytes: number;
}

// Plain JavaScript, evaluated as the thread's script: it must not depend on how this module was
// loaded (compiled in dist/, or TypeScript under the test runner).
const SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createCipheriv, createHmac } = require('node:crypto');
parentPort.on('message', ({ id, job, plain }) => {
  try {
    const input = Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength);
    const nonce = createHmac('sha256', job.nonceKey).update(input).digest().subarray(0, job.nonceBytes);
    const headerStart = Buffer.from(job.headerStart);
    const header = Buffer.concat([headerStart, nonce]);
    const cipher = createCipheriv('aes-256-gcm', job.cipherKey, nonce);
    cipher.setAAD(Buffer.concat([header, Buffer.from(job.purpose)]));
    const sealed = Buffer.allocUnsafeSlow(header.length + input.length + job.tagBytes);
    let at = header.copy(sealed, 0);
    for (let from = 0; from < input.length; from += job.sliceBytes) at += cipher.update(input.subarray(from, from + job.sliceBytes)).copy(sealed, at);
    at += cipher.final().copy(sealed, at);
    cipher.getAuthTag().copy(sealed, at);
    parentPort.postMessage({ id, sealed }, [sealed.buffer]);
  } catch (err) {
    parentPort.postMessage({ id, error: String(err && err.message || err) });
  }
});
`;

interface Pending {
  resolve: (sealed: Buffer) => void;
  reject: (err: Error) => void;
}

let thread: Worker | undefined;
let broken = false;
let nextId = 0;
const pending = new Map<number, Pending>();

function started(): Worker | undefined {
  if (broken) return undefined;
  if (thread) return thread;
  try {
    const worker = new Worker(SOURCE, { eval: true });
    worker.unref();
    worker.on('message', (message: { id: number; sealed?: Uint8Array; error?: string }) => {
      const job = pending.get(message.id);
      if (!job) return;
      pending.delete(message.id);
      if (message.sealed) job.resolve(Buffer.from(message.sealed.buffer, message.sealed.byteOffset, message.sealed.byteLength));
      else job.reject(new Error(message.error ?? 'sealing failed'));
    });
    const fail = (err: Error) => {
      broken = true;
      thread = undefined;
      for (const job of pending.values()) job.reject(err);
      pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the sealing thread exited with code ${code}`)));
    thread = worker;
    return worker;
  } catch {
    broken = true;
    return undefined;
  }
}

/**
 * Seals `plain` on the sealing thread, taking it over: its memory is moved there, so the caller
 * must not use `plain` again. Undefined when no thread is available (seal on the calling thread).
 */
export function sealOnThread(plain: Buffer, job: SealJob): Promise<Buffer> | undefined {
  const worker = started();
  if (!worker) return undefined;
  // Only a buffer that owns all of its memory can be moved; anything else goes as a copy.
  const owned = plain.byteOffset === 0 && plain.buffer.byteLength === plain.length ? plain : Buffer.from(plain);
  const id = nextId++;
  return new Promise<Buffer>((resolve, reject) => {
    pending.set(id, { resolve, reject });
    worker.postMessage({ id, job, plain: owned }, [owned.buffer as ArrayBuffer]);
  });
}
