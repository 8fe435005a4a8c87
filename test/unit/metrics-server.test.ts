import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { isLoopbackHost, type MetricsServer, serveMetrics } from '../../services/core/infrastructure/metrics-server.js';
import { silentLogger } from '../../services/core/infrastructure/log.js';
import { ConfigError } from '../../services/core/errors.js';

const opened: MetricsServer[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

describe('metrics endpoint exposure', () => {
  it('refuses to listen beyond loopback without a token, saying which setting to use', async () => {
    const refused = await serveMetrics(new Registry(), '0.0.0.0:0', silentLogger).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(refused).toBeInstanceOf(ConfigError);
    expect((refused as Error).message).toContain('TIDEMARK_METRICS_TOKEN_FILE');
  });

  it('serves loopback without a token', async () => {
    const server = await serveMetrics(new Registry(), '127.0.0.1:0', silentLogger);
    opened.push(server);
    expect((await fetch(`http://127.0.0.1:${server.port}/metrics`)).status).toBe(200);
  });

  it('with a token, answers 401 to a scrape without it or with another, 200 with it', async () => {
    const registry = new Registry();
    const server = await serveMetrics(registry, '0.0.0.0:0', silentLogger, { token: 'metrics-secret' });
    opened.push(server);
    const url = `http://127.0.0.1:${server.port}/metrics`;
    const none = await fetch(url);
    expect(none.status).toBe(401);
    expect(await none.text()).not.toContain('metrics-secret');
    expect((await fetch(url, { headers: { authorization: 'Bearer metrics-secre' } })).status).toBe(401);
    expect((await fetch(url, { headers: { authorization: 'Bearer metrics-secret' } })).status).toBe(200);
  });

  it('knows loopback addresses', () => {
    expect(['127.0.0.1', '127.9.9.9', '::1', 'localhost'].map(isLoopbackHost)).toEqual([true, true, true, true]);
    expect(['0.0.0.0', '10.0.0.1', '::', 'example.com'].map(isLoopbackHost)).toEqual([false, false, false, false]);
  });
});
