// requeue position: classic vs quorum. publish 0..19, consumer prefetch 5 gets 0..4, nacks 2 (requeue), acks 0,1,3,4; then read order of the rest
import { connect, setup, sleep, drain } from './lib.mjs';
const conn = await connect();
for (const type of ['classic', 'quorum']) {
  const q = `req-${type}-${Math.random().toString(36).slice(2, 6)}`;
  const ch = await conn.createConfirmChannel();
  const j = await setup(ch, q, type === 'quorum' ? { 'x-queue-type': 'quorum' } : {});
  for (let i = 0; i < 20; i++) ch.publish('src', q, Buffer.from('x'), { headers: { seq: i } }); await ch.waitForConfirms();
  const c = await conn.createChannel(); await c.prefetch(5);
  const got = [];
  await c.consume(q, (m) => got.push(m));
  await sleep(300);
  const first = got.map((m) => m.properties.headers.seq);
  c.nack(got[2], false, true); for (const i of [0, 1, 3, 4]) c.ack(got[i]);
  await sleep(300);
  const next = got.slice(5).map((m) => `${m.properties.headers.seq}${m.fields.redelivered ? 'r' : ''}`);
  await c.close(); await sleep(200);
  const rest = await drain(conn, q);
  console.log(type, 'firstDelivered', first.join(','), '| after nack(2)+ack(0,1,3,4) next deliveries', next.join(','), '| remaining order after close', rest.join(','));
  await ch.deleteQueue(q); await ch.deleteQueue(j); await ch.close();
}
await conn.close();
