/**
 * What services log, read as an operator's log pipeline reads it (docs/OPERATIONS.md#logs): every
 * line of a real coordinator and worker is a JSON event whose facts (epoch, vhost, queue, worker)
 * are fields, not words in its message; and a process that exits at once loses no line.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoundOutcome } from '../../services/gen/tidemark/v1/admin.js';
import { eventually } from '../helpers/eventually.js';
import { type LogEntry, parseLogLine, readClusterLog } from '../helpers/log-lines.js';
import { RoundRobinProducer } from '../helpers/producers.js';
import { type ProtectedVhost, startProtectedVhost } from '../helpers/protected-vhost.js';
import { repositoryRoot } from '../helpers/repo.js';

const QUEUES = [{ name: 'lg-a', type: 'classic' }] as const;

let setup: ProtectedVhost | undefined;

describe('service logs', () => {
  beforeAll(async () => {
    setup = await startProtectedVhost({ exchange: 'lg', queues: QUEUES, workers: 1 });
  });

  afterAll(async () => {
    await setup?.stop();
  });

  it('a coordinator and a worker write JSON lines whose events carry epoch, vhost, queue and worker as fields', async () => {
    const { cluster, services, vhost } = setup!;
    const producer = new RoundRobinProducer(services.amqpUrl, vhost, 'lg', QUEUES.map((q) => q.name), { maxMessages: 5 });
    producer.start();
    await producer.finished();
    const round = await cluster.client.checkpoint(true);
    expect(round.outcome, round.reason).toBe(RoundOutcome.ROUND_OUTCOME_COMMITTED);

    const committed = await eventually(`the coordinator to log checkpoint ${round.epoch} committed (logs in ${cluster.logFile})`, async () => {
      const found = readClusterLog(cluster.logFile).find((l) => l.entry?.msg === 'checkpoint committed' && l.entry.epoch === round.epoch);
      if (!found) throw new Error('not logged yet');
      return found;
    });
    expect(committed.process).toBe('coordinator');
    expect(committed.entry).toMatchObject({ level: 'info', coordinator: 'coordinator', epoch: round.epoch, queues: 1, roundId: expect.any(String) });
    expect(committed.entry!.component).toMatch(/^coordinator(\/|$)/);
    expect(new Date(committed.entry!.time as string).toISOString()).toBe(committed.entry!.time);

    const lines = readClusterLog(cluster.logFile);
    // Every line of every process is an event: nothing printed beside the logger.
    expect(lines.filter((l) => !l.entry).map((l) => `[${l.process}] ${l.line}`)).toEqual([]);
    const events = lines.map((l) => l.entry!);
    const capturing = events.find((e) => e.msg === 'capturing new queues' && e.vhost === vhost);
    expect(capturing, 'the worker logs the queues it starts capturing').toMatchObject({ worker: 'worker-1', queues: 1, level: 'info' });
    expect(capturing!.component).toMatch(/^worker\//);
    // Facts are fields: no message names this test's vhost or queue.
    const interpolated = (e: LogEntry) => e.msg.includes(vhost) || e.msg.includes(QUEUES[0].name);
    expect(events.filter(interpolated)).toEqual([]);
  });

  it('a process that exits or is killed right after logging loses no line, in JSON and in pretty mode', async () => {
    const logModule = join(repositoryRoot(), 'dist', 'services', 'core', 'infrastructure', 'log.js');
    if (!existsSync(logModule)) throw new Error(`${logModule} is missing: run "npm run build" first (npm test does)`);
    // More than a pipe holds (64 KiB), then the end: process.exit (the second signal, the stop
    // limit) or SIGKILL (a crash failpoint, the OOM killer), where no exit handler flushes a buffer.
    const script = `
      import { createLogger } from ${JSON.stringify(pathToFileURL(logModule).href)};
      const log = createLogger('worker', { format: process.env.FORMAT, fields: { worker: 'w-exit' } });
      for (let i = 0; i < 3000; i += 1) log.info('segment uploaded', { seq: i, queue: 'q', padding: 'x'.repeat(200) });
      log.warn('last line before exit');
      if (process.env.END === 'kill') process.kill(process.pid, 'SIGKILL');
      process.exit(3);`;
    for (const [format, end] of [['json', 'exit'], ['json', 'kill'], ['pretty', 'exit'], ['pretty', 'kill']]) {
      const { code, stderr } = await new Promise<{ code: number | string | null; stderr: string }>((resolve) => {
        const env = { ...process.env, FORMAT: format, END: end };
        const child = execFile(process.execPath, ['--input-type=module', '-e', script], { env, maxBuffer: 64 * 1024 * 1024 }, (_err, _stdout, err) =>
          resolve({ code: child.exitCode ?? child.signalCode, stderr: err }),
        );
      });
      expect(code, stderr.slice(-2_000)).toBe(end === 'kill' ? 'SIGKILL' : 3);
      const lines = stderr.split('\n').filter((line) => line !== '');
      expect(lines, `${format}, ${end}: lines written`).toHaveLength(3001);
      if (format === 'json') {
        expect(lines.map((line) => parseLogLine(line)?.seq).slice(0, 3000)).toEqual(Array.from({ length: 3000 }, (_, i) => i));
        expect(parseLogLine(lines[3000])).toMatchObject({ level: 'warn', msg: 'last line before exit', worker: 'w-exit' });
      } else {
        expect(lines[3000]).toMatch(/WARN: \[worker\] last line before exit/);
      }
    }
  });
});
