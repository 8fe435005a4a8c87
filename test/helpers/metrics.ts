/** Reads Prometheus text expositions in tests. */

/** The samples of a Prometheus text exposition, keyed by `name{labels}` exactly as printed. */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/** GET http://127.0.0.1:`port`/metrics (with a bearer `token` if given), parsed; throws unless it answers 200. */
export async function scrape(port: number, token?: string): Promise<Map<string, number>> {
  return parseMetrics(await scrapeText(port, token));
}

/** The exposition text itself. */
export async function scrapeText(port: number, token?: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  if (res.status !== 200) throw new Error(`GET /metrics: HTTP ${res.status} ${await res.text()}`);
  return res.text();
}

/**
 * The names an exposition declares (`# TYPE`), with or without samples: a metric with labels has
 * none until a series exists. A histogram declares its _bucket, _sum and _count series.
 */
export function declaredNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const match of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = match;
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
    else if (type === 'summary') for (const suffix of ['', '_sum', '_count']) names.add(name + suffix);
    else names.add(name);
  }
  return names;
}
