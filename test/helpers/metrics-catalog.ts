/**
 * The checked-in alert rules and dashboard against what Tidemark exports: every metric a rule or
 * panel names must be one a live cluster serves (test/integration/metrics-catalog.test.ts), and
 * the rules must have the shape Prometheus and operators rely on.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { repositoryRoot } from './repo.js';

export const RULES_FILE = 'deploy/prometheus/tidemark-alerts.yml';
export const DASHBOARD_FILE = 'deploy/grafana/tidemark-dashboard.json';

/** Series Prometheus makes itself for every target, not exported by Tidemark. */
export const PROMETHEUS_SERIES = new Set(['up', 'scrape_duration_seconds', 'scrape_samples_scraped']);

const AGGREGATORS = new Set(['sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile', 'limitk', 'limit_ratio']);
/** Keywords followed by a parenthesised list of label names. */
const LABEL_LISTS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'atan2', 'inf', 'nan']);

/**
 * The metric names a PromQL expression selects: identifiers that are not functions, aggregators
 * or keywords, outside label matchers `{...}`, label lists `by (...)`, ranges `[...]`, strings,
 * numbers, durations and Grafana variables (`$__rate_interval`). Each name once, in order.
 */
export function metricNames(expr: string): string[] {
  const names: string[] = [];
  let i = 0;
  const skipSpace = () => {
    while (i < expr.length && /\s/.test(expr[i])) i += 1;
  };
  const skipString = () => {
    const quote = expr[i];
    i += 1;
    while (i < expr.length && expr[i] !== quote) i += expr[i] === '\\' && quote !== '`' ? 2 : 1;
    i += 1;
  };
  /** Skips from an opening bracket to its closing one, over strings inside. */
  const skipGroup = (open: string, close: string) => {
    let depth = 0;
    while (i < expr.length) {
      const c = expr[i];
      if (c === '"' || c === "'" || c === '`') {
        skipString();
        continue;
      }
      if (c === open) depth += 1;
      if (c === close && --depth === 0) {
        i += 1;
        return;
      }
      i += 1;
    }
  };
  while (i < expr.length) {
    const c = expr[i];
    if (/\s/.test(c)) {
      i += 1;
    } else if (c === '#') {
      while (i < expr.length && expr[i] !== '\n') i += 1;
    } else if (c === '"' || c === "'" || c === '`') {
      skipString();
    } else if (c === '{') {
      skipGroup('{', '}');
    } else if (c === '[') {
      skipGroup('[', ']');
    } else if (c === '$') {
      i += 1;
      if (expr[i] === '{') skipGroup('{', '}');
      else while (i < expr.length && /\w/.test(expr[i])) i += 1;
    } else if (/[0-9.]/.test(c)) {
      while (i < expr.length && /[\w.]/.test(expr[i])) i += 1; // 0.95, 5m, 1h30m, 1e3, 0x1f
    } else if (/[a-zA-Z_:]/.test(c)) {
      const start = i;
      while (i < expr.length && /[\w:]/.test(expr[i])) i += 1;
      const word = expr.slice(start, i);
      const lower = word.toLowerCase();
      skipSpace();
      if (LABEL_LISTS.has(lower)) {
        if (expr[i] === '(') skipGroup('(', ')');
      } else if (KEYWORDS.has(lower) || AGGREGATORS.has(word)) {
        // not a name
      } else if (expr[i] === '(') {
        // a function call: its arguments are read on
      } else if (!names.includes(word)) {
        names.push(word);
      }
    } else {
      i += 1;
    }
  }
  return names;
}

export interface AlertRule {
  alert?: string;
  record?: string;
  expr?: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** What is wrong with a rules document's shape; empty when every alert is complete. */
export function ruleProblems(doc: unknown, anchors: ReadonlySet<string>): string[] {
  const problems: string[] = [];
  const groups = (doc as { groups?: unknown })?.groups;
  if (!Array.isArray(groups) || groups.length === 0) return ['no groups'];
  const seen = new Set<string>();
  for (const group of groups as Array<{ name?: unknown; rules?: unknown }>) {
    if (typeof group.name !== 'string' || group.name === '') problems.push('a group without a name');
    if (!Array.isArray(group.rules) || group.rules.length === 0) {
      problems.push(`group ${String(group.name)} has no rules`);
      continue;
    }
    for (const rule of group.rules as AlertRule[]) {
      const name = rule.alert ?? '(unnamed)';
      if (typeof rule.alert !== 'string' || !/^[A-Z][A-Za-z0-9]+$/.test(rule.alert)) problems.push(`${name}: alert must be a CamelCase name`);
      if (seen.has(name)) problems.push(`${name}: alert named twice`);
      seen.add(name);
      if (typeof rule.expr !== 'string' || metricNames(rule.expr).length === 0) problems.push(`${name}: expr names no metric`);
      if (typeof rule.for !== 'string' || !/^\d+[smhd]$/.test(rule.for)) problems.push(`${name}: for must be a duration such as 5m`);
      if (!['critical', 'warning', 'info'].includes(rule.labels?.severity ?? '')) problems.push(`${name}: labels.severity must be critical, warning or info`);
      if (!rule.annotations?.summary) problems.push(`${name}: no annotations.summary`);
      if (!rule.annotations?.description) problems.push(`${name}: no annotations.description`);
      const runbook = rule.annotations?.runbook ?? '';
      const anchor = /^docs\/OPERATIONS\.md#([\w-]+)$/.exec(runbook)?.[1];
      if (!anchor) problems.push(`${name}: annotations.runbook must be docs/OPERATIONS.md#<section>`);
      else if (!anchors.has(anchor)) problems.push(`${name}: runbook section #${anchor} is not in docs/OPERATIONS.md`);
    }
  }
  return problems;
}

/** Every alert's expression. */
export function ruleExpressions(doc: unknown): string[] {
  const groups = ((doc as { groups?: Array<{ rules?: AlertRule[] }> })?.groups ?? []);
  return groups.flatMap((g) => (g.rules ?? []).map((r) => r.expr ?? ''));
}

interface Panel {
  title?: string;
  targets?: Array<{ expr?: string }>;
  panels?: Panel[];
}

/** Every panel target's expression, rows' nested panels included. */
export function dashboardExpressions(dashboard: unknown): Array<{ panel: string; expr: string }> {
  const out: Array<{ panel: string; expr: string }> = [];
  const walk = (panels: Panel[] | undefined) => {
    for (const p of panels ?? []) {
      for (const t of p.targets ?? []) if (t.expr) out.push({ panel: p.title ?? '', expr: t.expr });
      walk(p.panels);
    }
  };
  walk((dashboard as { panels?: Panel[] })?.panels);
  return out;
}

/** The anchors GitHub makes of a Markdown file's headings. */
export function markdownAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  for (const line of markdown.split('\n')) {
    const heading = /^#{1,6}\s+(.*)$/.exec(line)?.[1];
    if (heading) anchors.add(heading.trim().toLowerCase().replace(/[^\w\s-]/g, '').replace(/\s/g, '-'));
  }
  return anchors;
}

/** The names a rules document and a dashboard select, and which of them `exported` lacks. */
export function unexportedMetrics(rules: unknown, dashboard: unknown, exported: ReadonlySet<string>): string[] {
  const named = new Set([...ruleExpressions(rules), ...dashboardExpressions(dashboard).map((d) => d.expr)].flatMap(metricNames));
  return [...named].filter((n) => !exported.has(n) && !PROMETHEUS_SERIES.has(n)).sort();
}

/** The checked-in rules (parsed YAML), dashboard (parsed JSON) and OPERATIONS.md anchors. */
export function checkedInCatalog(): { rules: unknown; dashboard: unknown; anchors: Set<string> } {
  const root = repositoryRoot();
  return {
    rules: parse(readFileSync(join(root, RULES_FILE), 'utf8')),
    dashboard: JSON.parse(readFileSync(join(root, DASHBOARD_FILE), 'utf8')),
    anchors: markdownAnchors(readFileSync(join(root, 'docs', 'OPERATIONS.md'), 'utf8')),
  };
}

/** Metric names in a parsed exposition (helpers/metrics.ts parseMetrics keys). */
export function exportedNames(samples: Map<string, number>): Set<string> {
  return new Set([...samples.keys()].map((key) => key.split('{')[0]));
}
