import amqp from 'amqplib';
export const VH = process.env.VH;
const M = 'http://localhost:15672/api';
const AUTH = 'Basic ' + Buffer.from('guest:guest').toString('base64');
export async function mgmt(method, path, body) {
  const r = await fetch(M + path, { method, headers: { authorization: AUTH, 'content-type': 'application/json' }, body: body ? JSON.stringify(body) : undefined });
  const t = await r.text();
  if (!r.ok && r.status !== 404) throw new Error(`${method} ${path}: ${r.status} ${t}`);
  return t ? JSON.parse(t) : null;
}
export const ev = (s) => encodeURIComponent(s);
export async function qstats(q) {
  const j = await mgmt('GET', `/queues/${ev(VH)}/${ev(q)}`);
  const ms = j.message_stats || {};
  return { messages: j.messages, ready: j.messages_ready, unacked: j.messages_unacknowledged, consumers: j.consumers,
    publish: ms.publish ?? 0, deliver: ms.deliver ?? 0, deliver_get: ms.deliver_get ?? 0, ack: ms.ack ?? 0, redeliver: ms.redeliver ?? 0 };
}
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let connN = 0;
export async function connect() {
  const c = await amqp.connect(`amqp://guest:guest@localhost:5672/${ev(VH)}`); const id = ++connN;
  c.on('error', (e) => console.error(`[${new Date().toISOString()}] conn${id} error`, e.message));
  c.on('close', (e) => { if (e) console.error(`[${new Date().toISOString()}] conn${id} closed`, e.message); });
  const cc = c.createChannel.bind(c), ccc = c.createConfirmChannel.bind(c);
  const wrap = (ch, kind) => { ch.on('error', (e) => console.error(`[${new Date().toISOString()}] conn${id} ${kind} channel error`, e.message)); return ch; };
  c.createChannel = async () => wrap(await cc(), 'plain'); c.createConfirmChannel = async () => wrap(await ccc(), 'confirm');
  return c;
}
process.on('unhandledRejection', (e) => { console.error(`[${new Date().toISOString()}] UNHANDLED`, e && e.stack); process.exit(3); });
// topology: exchange src (direct), queue q bound 'k', journal j stream bound 'k', fence fanout -> j
export async function setup(ch, q, qargs = {}, extra = {}, fenceEx = 'fence') {
  const j = `journal.${q}`;
  await ch.assertExchange('src', 'direct', { durable: true });
  await ch.assertExchange(fenceEx, 'fanout', { durable: true, autoDelete: false });
  await ch.assertQueue(q, { durable: true, arguments: qargs, ...extra });
  await ch.assertQueue(j, { durable: true, arguments: { 'x-queue-type': 'stream' } });
  await ch.bindQueue(q, 'src', q);
  await ch.bindQueue(j, 'src', q);
  await ch.bindQueue(j, fenceEx, '');
  return j;
}
// read journal from 'first' until we have seen `nFences` fences; returns records [{off, seq|null, fence}]
export async function readJournal(conn, j, names, timeoutMs = 30000) {
  const want = new Set(names); let done = false;
  const ch = await conn.createChannel();
  await ch.prefetch(1000);
  const recs = []; let fences = 0;
  return new Promise(async (resolve, reject) => {
    const to = setTimeout(() => reject(new Error('journal read timeout ' + recs.length)), timeoutMs);
    const { consumerTag } = await ch.consume(j, async (m) => {
      const h = m.properties.headers;
      const off = Number(h['x-stream-offset']);
      const isF = h['x-fence'] !== undefined;
      recs.push({ off, seq: isF ? null : Number(h.seq), fence: isF ? h['x-fence'] : null });
      if (!done) ch.ack(m);
      if (isF && want.delete(h['x-fence']) && want.size === 0 && !done) { done = true; clearTimeout(to); await ch.cancel(consumerTag); await ch.close(); resolve(recs); }
    }, { noAck: false, arguments: { 'x-stream-offset': 'first' } });
  });
}
// ground truth: after consumers closed, drain queue (nothing else consuming). returns seqs held
export async function drain(conn, q) {
  const ch = await conn.createChannel();
  const seqs = [];
  for (;;) { const m = await ch.get(q, { noAck: true }); if (!m) break; seqs.push(Number(m.properties.headers.seq)); }
  await ch.close();
  return seqs;
}
// analysis: given journal records, fence name, held seqs, count signal N -> errors
export function analyze(recs, fenceName, held, N, label) {
  const fi = recs.findIndex((r) => r.fence === fenceName);
  const before = recs.slice(0, fi).filter((r) => r.seq !== null);   // data before fence in journal order
  const dataBefore = before.length;
  const pos = new Map(before.map((r, i) => [r.seq, i]));
  const heldPos = held.filter((s) => pos.has(s)).map((s) => pos.get(s)).sort((a, b) => a - b);
  const trueHead = heldPos.length ? heldPos[0] : dataBefore;        // index (in data-before order) of oldest held msg
  const countHead = Math.max(0, dataBefore - N);
  const lost = heldPos.filter((p) => p < countHead).length;          // held msgs a count-based head would drop
  const extra = Math.max(0, trueHead - countHead);                   // already-gone msgs restore brings back
  const extraTotal = countHead <= trueHead ? (dataBefore - countHead) - heldPos.length : null;
  return { label, dataBefore, heldBeforeFence: heldPos.length, heldAfterFence: held.length - heldPos.length, N, countHead, trueHead, lost, extra, heldSpan: heldPos.length ? heldPos[heldPos.length-1]-heldPos[0]+1 : 0 };
}
export function hdr(seq) { return { headers: { seq }, persistent: true }; }
