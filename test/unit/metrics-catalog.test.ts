import { describe, expect, it } from 'vitest';
import { checkedInCatalog, dashboardExpressions, markdownAnchors, metricNames, ruleExpressions, ruleProblems, unexportedMetrics } from '../helpers/metrics-catalog.js';

describe('metric names in PromQL', () => {
  it.each([
    ['sum by (outcome) (increase(tidemark_rounds_total{outcome="aborted"}[30m])) > 2', ['tidemark_rounds_total']],
    ['(time() - max(a_seconds)) > 2 * max(b_seconds)\nand max(b_seconds) > 0', ['a_seconds', 'b_seconds']],
    ['histogram_quantile(0.95, sum by (le) (rate(x_bucket[$__rate_interval])))', ['x_bucket']],
    ['max(a) < count(up{job="tidemark-worker"})', ['a', 'up']],
    ['rate(x{job=~"a{b}c", path="by (y) \\" z"}[5m] offset 1h)', ['x']],
    ['topk(20, foo) or on (vhost, queue) group_left (bar) baz', ['foo', 'baz']],
    ['sum without (instance) (a) unless ignoring(job) b', ['a', 'b']],
    ['absent(tidemark_leader)', ['tidemark_leader']],
    ['max_over_time(deriv(x[5m])[1h:5m]) > Inf', ['x']],
    ['# tidemark_commented_out\nrecording:rule_name > bool 1e3', ['recording:rule_name']],
    ['a_count / a_sum + a_count', ['a_count', 'a_sum']],
    ["label_replace(m, 'dst', '$1', 'src', '(.*)')", ['m']],
    ['x @ start() + ${var} * y', ['x', 'y']],
  ])('%s', (expr, names) => {
    expect(metricNames(expr)).toEqual(names);
  });
});

describe('the checked-in alert rules and dashboard', () => {
  const { rules, dashboard, anchors } = checkedInCatalog();

  it('rules have groups, named alerts with expr, for, severity, summary, description and a runbook section that exists', () => {
    expect(ruleProblems(rules, anchors)).toEqual([]);
    expect(ruleExpressions(rules).length).toBeGreaterThanOrEqual(10);
  });

  it('the dashboard takes its datasource as an input and every panel queries something', () => {
    const d = dashboard as { __inputs: Array<{ name: string; pluginId: string }>; panels: Array<{ type: string; datasource?: { uid: string } }> };
    expect(d.__inputs).toEqual([expect.objectContaining({ name: 'DS_PROMETHEUS', pluginId: 'prometheus' })]);
    for (const panel of d.panels.filter((p) => p.type !== 'row')) expect(panel.datasource?.uid).toBe('${DS_PROMETHEUS}');
    expect(dashboardExpressions(dashboard).length).toBeGreaterThanOrEqual(30);
  });

  it('finds a metric a rule names that nobody exports', () => {
    const exported = new Set(['tidemark_leader']);
    const doc = { groups: [{ name: 'g', rules: [{ alert: 'A', expr: 'max(tidemark_leader) == 0 or tidemark_nobody_exports_this > 0' }] }] };
    expect(unexportedMetrics(doc, { panels: [{ targets: [{ expr: 'rate(tidemark_nor_this_total[5m])' }] }] }, exported)).toEqual(['tidemark_nobody_exports_this', 'tidemark_nor_this_total']);
    expect(unexportedMetrics(doc, {}, new Set([...exported, 'tidemark_nobody_exports_this']))).toEqual([]);
  });

  it('reports a rule without severity, summary or an existing runbook section', () => {
    const doc = { groups: [{ name: 'g', rules: [{ alert: 'NoShape', expr: 'x > 0', for: '5m', labels: {}, annotations: { description: 'd', runbook: 'docs/OPERATIONS.md#nowhere' } }] }] };
    expect(ruleProblems(doc, markdownAnchors('## Somewhere\n'))).toEqual([
      'NoShape: labels.severity must be critical, warning or info',
      'NoShape: no annotations.summary',
      'NoShape: runbook section #nowhere is not in docs/OPERATIONS.md',
    ]);
  });
});
