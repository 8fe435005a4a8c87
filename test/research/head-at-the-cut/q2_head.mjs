// Q2/Q3: count-based head vs ground truth at a fence, per scenario
import { VH, connect, setup, qstats, sleep, readJournal, drain, analyze, mgmt, ev } from './lib.mjs';
const SC = JSON.parse(process.argv[2]);
const { name, qargs = {}, consumers = [], preload = 300, rate = 2000, runMs = 12000, quiesce = false, stopProducerBeforeFence = false, priority = false, ttl = null, dlq = false, rep = 0 } = SC;
const q = `${name}-${rep}-${Math.random().toString(36).slice(2,7)}`;
const conn = await connect();      // producer + consumers
const conn2 = await connect();     // fence + declares
const pch = await conn.createConfirmChannel();
if (dlq) { await pch.assertQueue(`${q}.dlq`, { durable: true }); qargs['x-dead-letter-exchange'] = ''; qargs['x-dead-letter-routing-key'] = `${q}.dlq`; }
const FX = `fence.${q}`;
const j = await setup(pch, q, qargs, {}, FX);
const pubAt = new Map(); let seq = 0; let producing = true; const nacked = new Set();
async function publishBatch(n) {
  const ps = [];
  for (let i = 0; i < n; i++) { const s = seq++; pubAt.set(s, Date.now());
    const props = { headers: { seq: s }, persistent: true }; if (priority) props.priority = s % 10;
    ps.push(new Promise((res) => pch.publish('src', q, Buffer.from('x'), props, (err) => { if (err) nacked.add(s); res(); }))); }
  await Promise.all(ps);
}
await publishBatch(preload);
// consumers
const acks = []; // {seq, t}
const cstate = [];
let frozen = false;
for (const c of consumers) {
  const ch = await conn.createChannel(); await ch.prefetch(c.prefetch);
  const st = { ch, held: new Map(), n: 0, out: 0 }; cstate.push(st);
  await ch.consume(q, (m) => {
    const s = Number(m.properties.headers.seq); st.n++; st.out++;
    if (frozen) return;
    const pol = c.policy;
    const act = () => {
      if (frozen) return;
      if (pol === 'hold') return;
      if (pol === 'holdEvery' && s % c.k === 0) return;
      if (pol === 'nackRequeueEvery' && s % c.k === 0 && !m.fields.redelivered) { ch.nack(m, false, true); st.out--; return; }
      if (pol === 'rejectEvery' && s % c.k === 0) { acks.push({ seq: s, t: Date.now(), how: 'dlq' }); ch.reject(m, false); st.out--; return; }
      acks.push({ seq: s, t: Date.now() }); ch.ack(m); st.out--;
    };
    if (c.delayMs) setTimeout(act, c.delayMs); else act();
  }, { noAck: false });
}
// producer loop
const prodLoop = (async () => { while (producing) { await publishBatch(Math.max(1, Math.round(rate / 100))); await sleep(10); } })();
await sleep(runMs);
if (stopProducerBeforeFence) { producing = false; await prodLoop; await sleep(50); }
// fence
let tQuiesce = null; if (quiesce) { frozen = true; tQuiesce = Date.now(); await sleep(30); }
const fch = await conn2.createConfirmChannel();
const och = await conn2.createChannel();
const fenceName = `F-${q}`;
// MARKER=1 (v2): pre-fence marker M0 -> confirm -> passive declare on the same channel -> fence F
const withMarker = process.env.MARKER === '1';
const m0Name = `M0-${q}`;
let m0Decl, m0DeclMs;
if (withMarker) {
  await new Promise((res) => fch.publish(FX, '', Buffer.from('m'), { headers: { 'x-fence': m0Name }, persistent: true }, () => res()));
  const tM0 = Date.now();
  m0Decl = await fch.checkQueue(q);
  m0DeclMs = Date.now() - tM0;
}
const preDecl = await och.checkQueue(q);
const Utrue = cstate.reduce((a, st) => a + st.out, 0);
const tPub = Date.now();
const confirmed = new Promise((res) => fch.publish(FX, '', Buffer.from('f'), { headers: { 'x-fence': fenceName }, persistent: true }, () => res(Date.now())));
const sameP = fch.checkQueue(q).then((r) => ({ r, t: Date.now() }));         // pipelined right after publish, same channel
const tConf = await confirmed;
const otherP = och.checkQueue(q).then((r) => ({ r, t: Date.now() }));        // other channel, right after confirm
const afterP = fch.checkQueue(q).then((r) => ({ r, t: Date.now() }));        // same channel after confirm
const [same, other, after] = await Promise.all([sameP, otherP, afterP]);
const mg = await qstats(q); const tMg = Date.now();
let cons = await mgmt('GET', `/queues/${ev(VH)}/${ev(q)}`);
const mgmtPrefetch = (cons.consumer_details || []).reduce((a, c) => a + (c.prefetch_count || 0), 0);
// freeze
frozen = true; producing = false; await prodLoop;
const tFreeze = Date.now();
for (const st of cstate) await st.ch.close();
await sleep(300);
const drained = await drain(conn2, q);
const tDrain = Date.now();
const recs = await readJournal(conn2, j, withMarker ? [m0Name, fenceName] : [fenceName]);
// ground truth: held at fence = still in queue at drain  ∪ acked/dlq'd with ack sent at/after tPub ∪ expired after tPub
const held = new Set(drained);
const ackAfter = acks.filter((a) => a.t >= (tQuiesce ?? tPub)); ackAfter.forEach((a) => held.add(a.seq));
const ambiguous = acks.filter((a) => a.t >= tPub - 5 && a.t < tPub).length;
let expiredAfter = 0;
if (ttl) { const ackedSet = new Set(acks.map((a) => a.seq)); for (const [s, t] of pubAt) if (!held.has(s) && !ackedSet.has(s) && t + ttl >= tPub && t + ttl <= tDrain) { held.add(s); expiredAfter++; } }
const heldArr = [...held];
const sumPrefetch = consumers.reduce((a, c) => a + c.prefetch, 0);
const R = after.r.messageCount;
const cands = {
  'A passive ready (after confirm)': R,
  'A0 passive ready (before fence)': preDecl.messageCount,
  'A1 passive ready (pipelined same ch)': same.r.messageCount,
  'B passive ready + sumPrefetch': R + sumPrefetch,
  'C mgmt messages (stale)': mg.messages,
  'E passive ready + true unacked (oracle)': R + Utrue,
  'D passive ready + mgmt unacked (stale)': R + (mg.unacked ?? 0),
};
const fi = recs.findIndex((r) => r.fence === fenceName);
const trueHeldBefore = heldArr.filter((s) => recs.slice(0, fi).some((r) => r.seq === s)).length;
const fiM0 = withMarker ? recs.findIndex((r) => r.fence === m0Name) : -1;
const dM0 = withMarker ? recs.slice(0, fiM0).filter((r) => r.seq !== null).length : 0;
for (const [k, N] of !withMarker ? [] : [['M marker-before: D(M0) - (R@M0 + sumPrefetch)', m0Decl.messageCount + sumPrefetch], ['M-oracle D(M0) - (R@M0 + trueU)', m0Decl.messageCount + Utrue]]) {
  const h = analyze(recs.filter((r) => r.fence !== m0Name), fenceName, heldArr, 0, k);
  // recompute with countHead = dM0 - N (positions in data-before-F order; data before M0 are the first dM0 of them)
  const before = recs.slice(0, recs.findIndex((r) => r.fence === fenceName)).filter((r) => r.seq !== null);
  const pos = new Map(before.map((r, i) => [r.seq, i]));
  const heldPos = heldArr.filter((x) => pos.has(x)).map((x) => pos.get(x)).sort((a, b) => a - b);
  const countHead = Math.max(0, dM0 - N);
  h.N = N; h.countHead = countHead; h.lost = heldPos.filter((p) => p < countHead).length; h.extra = Math.max(0, h.trueHead - countHead);
  cands.__m = cands.__m || []; cands.__m.push(h);
}
const res = { scenario: name + (quiesce ? ' [quiesced' : ' [live') + (withMarker ? ',v2]' : ']'), rep, Utrue, qargs: SC.qargs, consumers, sumPrefetch, mgmtPrefetch, published: seq, brokerNacked: nacked.size,
  signals: { preDecl: preDecl.messageCount, same: same.r.messageCount, sameLagMs: same.t - tPub, after: R, afterLagMs: after.t - tConf, other: other.r.messageCount, otherLagMs: other.t - tConf,
    consumerCount: after.r.consumerCount, confirmMs: tConf - tPub, mgmt: mg, mgmtFetchMs: tMg - tConf },
  truth: { heldAtFence: held.size, heldBeforeFenceInJournal: trueHeldBefore, drained: drained.length, ackAfterFence: ackAfter.length, ambiguousAcks: ambiguous, expiredAfter, freezeAfterPubMs: tFreeze - tPub },
  heads: Object.entries(cands).filter(([k]) => k !== '__m').map(([k, N]) => analyze(recs, fenceName, heldArr, N, k)).concat(cands.__m ?? []), ...(withMarker ? { m0: { dM0, R: m0Decl.messageCount, declMs: m0DeclMs } } : {}) };
console.log(JSON.stringify(res));
await och.deleteQueue(q); await och.deleteQueue(j); await och.deleteExchange(FX); if (dlq) await och.deleteQueue(`${q}.dlq`);
await pch.close(); await fch.close(); await och.close(); await conn.close(); await conn2.close();
