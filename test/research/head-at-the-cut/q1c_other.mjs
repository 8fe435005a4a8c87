// Q1c: consumer_details freshness in mgmt; cost of passive declares for many queues
import { VH, connect, sleep, mgmt, ev } from './lib.mjs';
const conn = await connect(); const ch = await conn.createChannel();
const q = 'q1c-' + Math.random().toString(36).slice(2, 6);
await ch.assertQueue(q, { durable: true });
const out = {};
for (let rep = 0; rep < 3; rep++) {
  const c = await conn.createChannel(); await c.prefetch(7 + rep);
  const t0 = Date.now(); await c.consume(q, () => {});
  let lag = null;
  while (Date.now() - t0 < 12000) { const j = await mgmt('GET', `/queues/${ev(VH)}/${ev(q)}`); const d = j.consumer_details || []; if (d.length && d.some((x) => x.prefetch_count === 7 + rep)) { lag = Date.now() - t0; out['consumer_detail_sample'] = d[0]; break; } await sleep(25); }
  const t1 = Date.now(); await c.close(); let lagGone = null;
  while (Date.now() - t1 < 12000) { const j = await mgmt('GET', `/queues/${ev(VH)}/${ev(q)}`); if (!(j.consumer_details || []).length && j.consumers === 0) { lagGone = Date.now() - t1; break; } await sleep(25); }
  const tc = Date.now(); let lagC = null; const c2 = await conn.createChannel(); await c2.consume(q, () => {});
  while (Date.now() - tc < 12000) { const l = await mgmt('GET', `/consumers/${ev(VH)}`); if (l.some((x) => x.queue.name === q)) { lagC = Date.now() - tc; break; } await sleep(25); }
  await c2.close(); await sleep(500);
  (out.reps ||= []).push({ rep, consumerDetailsAppearMs: lag, consumerDetailsGoneMs: lagGone, apiConsumersAppearMs: lagC });
}
// passive declare cost for N queues
const qs = []; for (let i = 0; i < 200; i++) { const n = `q1c-many-${i}`; await ch.assertQueue(n, { durable: false, autoDelete: false }); qs.push(n); }
let t = Date.now(); for (const n of qs) await ch.checkQueue(n); out.seqDeclare200Ms = Date.now() - t;
t = Date.now(); await Promise.all(qs.map((n) => ch.checkQueue(n))); out.pipelinedDeclare200Ms = Date.now() - t;
for (const n of qs) await ch.deleteQueue(n); await ch.deleteQueue(q);
console.log(JSON.stringify(out, null, 1)); await ch.close(); await conn.close();
