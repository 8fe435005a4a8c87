// Q5: "delivery frontier" rule for out-of-order acks with bounded hold time H.
// Every ~roundMs: publish marker M_k to the fence exchange (confirm), passive declare -> R_k (ready only), t_k.
// frontier_k = D(M_k) - R_k - eps: every message before it had been delivered (or dropped) by t_k.
// At the final fence F (time t_F): head_H = frontier_k of the latest k with t_k <= t_F - H. Valid if no message is held unacked > H and nothing is requeued.
import { VH, connect, setup, sleep, readJournal, drain, qstats } from './lib.mjs';
const SC = JSON.parse(process.argv[2]);
const { name = 'frontier', qargs = {}, nCons = 4, prefetch = 100, holdMaxMs = 2000, rate = 300, runMs = 15000, roundMs = 500, requeueEvery = 0 } = SC;
const q = `${name}-${Math.random().toString(36).slice(2, 7)}`; const FX = `fence.${q}`;
const conn = await connect(); const conn2 = await connect();
const pch = await conn.createConfirmChannel(); const j = await setup(pch, q, qargs, {}, FX);
let seq = 0, producing = true, frozen = false; const acks = [];
const prod = (async () => { while (producing) { for (let i = 0; i < rate / 20; i++) pch.publish('src', q, Buffer.from('x'), { headers: { seq: seq++ }, persistent: true }); await pch.waitForConfirms(); await sleep(50); } })();
const cons = [];
for (let c = 0; c < nCons; c++) {
  const ch = await conn.createChannel(); await ch.prefetch(prefetch); cons.push(ch);
  await ch.consume(q, (m) => {
    const s = Number(m.properties.headers.seq);
    setTimeout(() => { if (frozen) return;
      if (requeueEvery && s % requeueEvery === 0 && !m.fields.redelivered) { ch.nack(m, false, true); return; }
      acks.push({ seq: s, t: Date.now() }); ch.ack(m); }, Math.random() * holdMaxMs);
  });
}
const fch = await conn2.createConfirmChannel();
const rounds = []; const t0 = Date.now(); let k = 0;
while (Date.now() - t0 < runMs) {
  const mName = `M${k++}`;
  await new Promise((res) => fch.publish(FX, '', Buffer.from('m'), { headers: { 'x-fence': mName } }, () => res()));
  const r = await fch.checkQueue(q); rounds.push({ name: mName, t: Date.now(), R: r.messageCount });
  await sleep(roundMs);
}
const mgBefore = await qstats(q);
frozen = true; const tFreeze = Date.now(); await sleep(30);
const fenceName = 'F'; const tF = Date.now();
await new Promise((res) => fch.publish(FX, '', Buffer.from('f'), { headers: { 'x-fence': fenceName } }, () => res()));
producing = false; await prod;
for (const ch of cons) await ch.close(); await sleep(300);
const drained = await drain(conn2, q);
const recs = await readJournal(conn2, j, [...rounds.map((r) => r.name), fenceName]);
const held = new Set(drained); acks.filter((a) => a.t >= tFreeze).forEach((a) => held.add(a.seq));
// data positions
const dataIdx = new Map(); let d = 0; const dBefore = {};
for (const r of recs) { if (r.fence !== null) { dBefore[r.fence] = d; } else dataIdx.set(r.seq, d++); }
const DF = dBefore[fenceName];
const heldPos = [...held].filter((s) => dataIdx.has(s) && dataIdx.get(s) < DF).map((s) => dataIdx.get(s)).sort((a, b) => a - b);
const trueHead = heldPos.length ? heldPos[0] : DF;
const out = { scenario: name, holdMaxMs, nCons, prefetch, requeueEvery, DF, heldBeforeF: heldPos.length, trueHead, mgmtRedeliver: mgBefore.redeliver, rules: [] };
const lastR = rounds[rounds.length - 1];
for (const H of [0, 500, 1000, 1500, 2000, 2500, 3000]) {
  const cand = rounds.filter((r) => r.t <= tF - H); const kk = cand[cand.length - 1];
  if (!kk) continue;
  const head = Math.max(0, dBefore[kk.name] - kk.R);
  out.rules.push({ H, round: kk.name, ageMs: tF - kk.t, head, lost: heldPos.filter((p) => p < head).length, extra: Math.max(0, trueHead - head) });
}
// FIFO rule on the last marker for comparison
const fifo = Math.max(0, dBefore[lastR.name] - (lastR.R + nCons * prefetch));
out.fifoRule = { head: fifo, lost: heldPos.filter((p) => p < fifo).length, extra: Math.max(0, trueHead - fifo) };
console.log(JSON.stringify(out));
const och = await conn2.createChannel(); await och.deleteQueue(q); await och.deleteQueue(j); await och.deleteExchange(FX); await och.close();
await pch.close(); await fch.close(); await conn.close(); await conn2.close();
