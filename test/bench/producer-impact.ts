/**
 * Producer impact: a producer's confirmed publish rate into a protected queue ÷ into the same kind
 * of queue without a journal. Both are classic durable queues bound by name to one direct
 * exchange (p-prod-<size>, u-prod-<size>); the protected one's journal stream was declared and bound by the real coordinator's
 * discovery, and the cluster's worker is capturing it while the producer runs, as in production.
 * Each repetition publishes the same N messages to each (alternating which goes first) with the
 * restore's confirm window, timed from the first publish to the last confirm; both source queues
 * are purged after every repetition.
 */
import { bodyMaker, checkJournalBudget, connectAmqp, log, messageOptions, now, pairOrder, publishWindowed, rateText, spread, type BenchContext, type MessageSize, type Ratio } from './bench-kit.js';
import { captureErrors, EXCHANGE, producerQueues, purge, type ProtectedCluster } from './protected-cluster.js';

async function publishInto(url: string, queue: string, size: MessageSize, count: number, window: number): Promise<number> {
  const body = bodyMaker(size.bytes);
  const connection = await connectAmqp(url);
  try {
    const channel = await connection.createConfirmChannel();
    const started = now();
    await publishWindowed(channel, count, window, (i) => ({ exchange: EXCHANGE, routingKey: queue, body: body(i), options: messageOptions(i) }));
    return now() - started;
  } finally {
    await connection.close().catch(() => {});
  }
}

export async function measureProducerImpact(ctx: BenchContext, pc: ProtectedCluster, size: MessageSize): Promise<Ratio> {
  const count = ctx.counts.producer[size.label];
  const window = ctx.defaults.confirmWindow;
  const queues = producerQueues(size);
  checkJournalBudget(`producer impact: ${1 + ctx.reps} runs`, size, (1 + ctx.reps) * count);
  const rates = { journal: [] as number[], plain: [] as number[], paired: [] as number[] };
  for (let rep = 0; rep <= ctx.reps; rep += 1) {
    const result: Record<string, number> = {};
    try {
      for (const side of pairOrder(rep, 'plain', 'journal') as Array<keyof typeof queues>) {
        result[side] = (count * 1000) / (await publishInto(pc.url, queues[side], size, count, window));
      }
    } finally {
      await purge(pc.url, Object.values(queues));
    }
    const what = rep === 0 ? 'warm-up' : `rep ${rep}/${ctx.reps}`;
    log(`producer ${size.label} ${what}: with journal ${Math.round(result.journal)}/s, without ${Math.round(result.plain)}/s`);
    if (rep === 0) continue;
    rates.journal.push(result.journal);
    rates.plain.push(result.plain);
    rates.paired.push(result.journal / result.plain);
  }
  // A capture that failed stopped reading the journal: the journal side would have had it easier.
  const failed = (await captureErrors(pc)).filter((e) => e.startsWith(`${queues.journal}:`));
  if (failed.length > 0) throw new Error(`the worker's capture failed during the step, so the figure is not the protected case: ${failed.join('; ')}`);
  const journal = spread(rates.journal);
  const plain = spread(rates.plain);
  return {
    name: 'producer_impact',
    label: size.label,
    value: journal.median / plain.median,
    detail: `with journal ${rateText(journal)}, without ${rateText(plain)}; ${count} messages, confirm window ${window}, ${ctx.reps} reps`,
    paired: spread(rates.paired),
  };
}
