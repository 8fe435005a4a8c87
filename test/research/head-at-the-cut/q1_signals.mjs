// Q1: which signals exist and how stale are they
import { VH, connect, setup, qstats, sleep, hdr, mgmt, ev } from './lib.mjs';
const type = process.argv[2] || 'classic';
const q = `q1-${type}`;
const conn = await connect();
const ch = await conn.createConfirmChannel();
await setup(ch, q, type === 'quorum' ? { 'x-queue-type': 'quorum' } : {});
const out = { type, passive: [], mgmtLag: [] };
async function waitMgmt(pred, what) {
  const t0 = Date.now();
  for (;;) { const s = await qstats(q); if (pred(s)) { out.mgmtLag.push({ what, lagMs: Date.now() - t0, s }); return s; } if (Date.now() - t0 > 15000) { out.mgmtLag.push({ what, lagMs: 'timeout', s }); return s; } await sleep(50); }
}
let seq = 0;
const pubN = async (n) => { for (let i = 0; i < n; i++) ch.publish('src', q, Buffer.from('x'), hdr(seq++)); await ch.waitForConfirms(); };
for (let rep = 0; rep < 3; rep++) {
  await sleep(1000 + rep * 1700); // vary phase relative to stats emission
  const before = await qstats(q);
  await pubN(100);
  const p = await ch.checkQueue(q);
  out.passive.push({ rep, after: 'publish100', messageCount: p.messageCount, consumerCount: p.consumerCount });
  await waitMgmt((s) => s.messages === before.messages + 100, `rep${rep} publish100 -> messages`);
  await waitMgmt((s) => s.publish >= before.publish + 100, `rep${rep} publish100 -> message_stats.publish`);
}
// consumer holding 30 unacked
const cch = await conn.createChannel(); await cch.prefetch(30);
const held = [];
await cch.consume(q, (m) => held.push(m), { noAck: false });
await sleep(200);
let p = await ch.checkQueue(q);
out.passive.push({ after: 'consumer prefetch30 holding', messageCount: p.messageCount, consumerCount: p.consumerCount, held: held.length });
const base = await qstats(q);
await waitMgmt((s) => s.unacked === 30, 'consumer holds 30 -> messages_unacknowledged');
const b2 = await qstats(q);
for (let i = 0; i < 10; i++) cch.ack(held[i]);
await sleep(100);
p = await ch.checkQueue(q);
out.passive.push({ after: 'acked 10 (first)', messageCount: p.messageCount, consumerCount: p.consumerCount });
await waitMgmt((s) => s.ack >= b2.ack + 10, 'ack10 -> message_stats.ack');
await waitMgmt((s) => s.messages === b2.messages - 10, 'ack10 -> messages');
await cch.close();
p = await ch.checkQueue(q);
out.passive.push({ after: 'consumer closed (20 requeued)', messageCount: p.messageCount, consumerCount: p.consumerCount });
await waitMgmt((s) => s.redeliver >= 0 && s.unacked === 0 && s.consumers === 0, 'close -> unacked 0, consumers 0');
out.final = await qstats(q);
const raw = await mgmt('GET', `/queues/${ev(VH)}/${ev(q)}`);
out.queueFields = Object.keys(raw).sort().join(' ');
out.messageStatsKeys = Object.keys(raw.message_stats || {}).join(' ');
console.log(JSON.stringify(out, null, 1));
await ch.close(); await conn.close();
