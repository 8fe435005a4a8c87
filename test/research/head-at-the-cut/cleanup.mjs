import { connect, mgmt, ev, VH } from './lib.mjs';
const conn = await connect(); const ch = await conn.createChannel(); let n = 0;
for (const q of await mgmt('GET', `/queues/${ev(VH)}?columns=name`)) { await ch.deleteQueue(q.name); n++; }
for (const x of await mgmt('GET', `/exchanges/${ev(VH)}?columns=name`)) if (x.name.startsWith('fence.')) await ch.deleteExchange(x.name);
console.log('deleted queues', n); await ch.close(); await conn.close();
