// Q1b: management staleness per field: time from action to first change of each field
import { VH, connect, setup, qstats, sleep, hdr } from './lib.mjs';
const type = process.argv[2] || 'classic';
const q = `q1b-${type}`;
const conn = await connect();
const ch = await conn.createConfirmChannel();
await setup(ch, q, type === 'quorum' ? { 'x-queue-type': 'quorum' } : {});
let seq = 0;
for (let i = 0; i < 200; i++) ch.publish('src', q, Buffer.from('x'), hdr(seq++)); await ch.waitForConfirms();
const cch = await conn.createChannel(); await cch.prefetch(500);
const held = []; await cch.consume(q, (m) => held.push(m), { noAck: false });
await sleep(7000);
const rows = [];
async function watch(label, action, fields) {
  const b = await qstats(q);
  const t0 = Date.now(); await action();
  const seen = {};
  while (Object.keys(seen).length < fields.length && Date.now() - t0 < 12000) {
    const s = await qstats(q);
    for (const f of fields) if (!(f in seen) && s[f] !== b[f]) seen[f] = Date.now() - t0;
    await sleep(25);
  }
  rows.push({ label, ...seen });
}
for (let rep = 0; rep < 6; rep++) {
  await sleep(800 * rep % 5000);
  await watch(`publish50#${rep}`, async () => { for (let i = 0; i < 50; i++) ch.publish('src', q, Buffer.from('x'), hdr(seq++)); await ch.waitForConfirms(); }, ['messages', 'unacked', 'publish', 'deliver']);
  await watch(`ack20#${rep}`, async () => { for (let i = 0; i < 20; i++) cch.ack(held.shift()); await ch.checkQueue(q); }, ['messages', 'unacked', 'ack']);
}
console.log(JSON.stringify(rows));
await cch.close(); await ch.close(); await conn.close();
