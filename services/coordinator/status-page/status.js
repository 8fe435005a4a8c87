// Tidemark status page: polls the coordinator's read-only JSON API (docs/OPERATIONS.md#status-page)
// and draws it. No build step and no dependency: the timeline is a small hand-made SVG, so each
// checkpoint is an element a person can hover and a test can find.
//
// The token lives in this tab's sessionStorage only and goes out as "Authorization: Bearer" on
// same-origin fetches; never in a URL. Everything shown goes through textContent, never HTML:
// queue and vhost names come from the broker and are not trusted.

const TOKEN_KEY = 'tidemark.status.token';
const REFRESH_MS = 2500;
const SVG = 'http://www.w3.org/2000/svg';

const $ = (id) => document.getElementById(id);
let timer;

/** An element with a class and text (or children). */
function el(tag, options = {}, ...children) {
  const node = document.createElement(tag);
  if (options.className) node.className = options.className;
  if (options.title) node.title = options.title;
  for (const [k, v] of Object.entries(options.data ?? {})) node.dataset[k] = String(v);
  if (options.text !== undefined) node.textContent = String(options.text);
  for (const child of children) node.append(child);
  return node;
}

function td(text, className) {
  return el('td', { text, className });
}

function formatBytes(n) {
  if (!n) return '0 B';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  const i = Math.min(units.length - 1, Math.floor(Math.log(n) / Math.log(1024)));
  return `${(n / 1024 ** i).toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

const formatCount = (n) => Number(n ?? 0).toLocaleString('en-US');
const formatTime = (ms) => (ms ? new Date(ms).toLocaleString() : '—');

function formatAgo(ms, now) {
  if (!ms) return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

function formatDuration(ms) {
  if (!ms) return 'off';
  if (ms % 86400000 === 0) return `${ms / 86400000} d`;
  if (ms % 3600000 === 0) return `${ms / 3600000} h`;
  if (ms % 60000 === 0) return `${ms / 60000} min`;
  return `${ms / 1000} s`;
}

function fillRows(tableId, rows, emptyText, columns) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren(...(rows.length > 0 ? rows : [el('tr', {}, el('td', { text: emptyText, className: 'empty' }))]));
  if (rows.length === 0) body.rows[0].cells[0].colSpan = columns;
}

/** A JSON GET with the token; a 401 signs out, other failures throw with the server's words. */
async function api(path) {
  const res = await fetch(path, { headers: { authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` }, cache: 'no-store', credentials: 'omit' });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401 || res.status === 403) throw Object.assign(new Error(body.error ?? `refused (${res.status})`), { refused: true });
  if (!res.ok) throw new Error(`${path}: ${body.error ?? `HTTP ${res.status}`}`);
  return body;
}

function renderStatus(view) {
  const s = view.status;
  const now = view.generatedAtMs;
  $('coordinator-id').textContent = s.coordinatorId;
  const leader = $('leader');
  leader.hidden = false;
  leader.textContent = s.leader ? 'leader' : 'standby';
  leader.className = `badge ${s.leader ? 'leader' : 'standby'}`;
  $('signed-in').hidden = false;
  $('signed-in').textContent = `signed in as ${view.caller.name} (${view.caller.role})`;
  $('card-coordinator').textContent = s.leader ? 'Leader' : 'Standby';
  $('card-token').textContent = `${s.coordinatorId} · leader token ${s.leaderToken}`;
  $('card-latest').textContent = s.latestCheckpoint ? `#${s.latestCheckpoint}` : 'none yet';
  $('card-latest-at').textContent = s.latestCheckpoint ? `committed ${formatAgo(s.latestCheckpointAtMs, now)}` : 'no checkpoint committed';
  $('card-rounds').textContent = `${formatCount(s.roundsCommitted)} committed`;
  const last = s.lastRound;
  $('card-last-round').textContent = `${formatCount(s.roundsAborted)} aborted` + (last ? ` · last #${last.epoch} ${last.outcome} in ${last.durationMs} ms${last.reason ? `: ${last.reason}` : ''}` : '') + (s.intervalMs ? ` · every ${formatDuration(s.intervalMs)}` : ' · no schedule');
  $('card-queues').textContent = formatCount(s.protectedQueues);
  $('card-store').textContent = s.store;

  fillRows(
    'workers',
    s.workers.map((w) =>
      el('tr', { data: { worker: w.workerId } }, td(w.workerId), td(w.address), el('td', { className: `state ${w.reachable ? 'ok' : 'bad'}`, text: w.reachable ? 'live' : 'unreachable' }), td(formatCount(w.queues), 'num'), td(w.error || '')),
    ),
    'no live worker: start one (tidemark worker) or see the coordinator log',
    5,
  );

  fillRows(
    'queues',
    view.queues.map((q) => {
      // No lag for a queue no worker reports on (only in a checkpoint).
      const lag = q.lagMessages === null ? '—' : `${formatCount(q.lagMessages)} msg${q.lagSeconds === null ? '' : ` · ${q.lagSeconds} s`}`;
      const cut = q.outsideCut ? `outside (from #${q.outsideCut.sinceEpoch})` : q.cut ? `#${q.cut.epoch}: ${formatCount(q.cut.messages)} msg, ${formatBytes(q.cut.bodyBytes)}` : 'not in a checkpoint yet';
      const coverage = [];
      if (q.error) coverage.push(['bad', `not capturing: ${q.error}`]);
      if (q.coverageGap) coverage.push(['bad', `gap: ${formatCount(q.coverageGap.uncaptured)} uncaptured (${q.coverageGap.reason})`]);
      if (q.incomplete) coverage.push(['warn', `possibly incomplete since #${q.incomplete.sinceEpoch}: ${q.incomplete.reason}`]);
      if (q.outsideCut) coverage.push(['warn', `outside the cut: ${q.outsideCut.reason}`]);
      if (q.contents) coverage.push(['warn', q.contents.headKnown ? `contents miss ${formatCount(q.contents.predating)} message(s) held before protection` : 'contents unknown (restores history)']);
      // "No gap seen" rather than "covered": the leader checks coverage only once a queue has been idle.
      if (coverage.length === 0) coverage.push(['ok', 'no gap seen']);
      return el(
        'tr',
        { data: { queue: `${q.vhost}/${q.queue}` } },
        td(q.vhost),
        td(q.queue),
        td(q.worker || '—'),
        td(formatCount(q.captured), 'num'),
        td(q.worker ? `${formatCount(q.durableOffset)} / ${formatCount(q.nextOffset)}` : '—', 'num'),
        td(formatCount(q.buffered), 'num'),
        td(lag, 'num lag'),
        td(cut),
        el('td', {}, ...coverage.map(([kind, text]) => el('div', { className: `state ${kind}`, text }))),
      );
    }),
    'no protected queue yet (TIDEMARK_PROTECT selects them)',
    9,
  );

  const items = [];
  if (!s.leader) items.push('this coordinator is a standby: coverage, the broker and held-back queues are shown by the leader only');
  for (const g of s.coverageGaps) items.push(`coverage gap in ${g.vhost}/${g.queue}: ${formatCount(g.uncaptured)} message(s) not captured (${g.reason})`);
  for (const q of s.incompleteQueues) items.push(`${q.vhost}/${q.queue} possibly incomplete since checkpoint #${q.sinceEpoch}: ${q.reason}`);
  for (const q of s.outsideCut) items.push(`${q.vhost}/${q.queue} is outside the latest cut, carried from #${q.sinceEpoch}: ${q.reason}`);
  for (const q of s.contentsQueues) items.push(`${q.vhost}/${q.queue}: contents ${q.headKnown ? `miss ${formatCount(q.predating)} message(s) held before protection` : 'unknown'} (${q.reason})`);
  if (s.unprotectedCount > 0) items.push(`${formatCount(s.unprotectedCount)} queue(s) held back by the broker resource guard (first: ${s.unprotected.slice(0, 3).map((q) => `${q.vhost}/${q.queue}`).join(', ')})`);
  if (s.coverageUnchecked > 0) items.push(`${formatCount(s.coverageUnchecked)} queue(s) whose coverage is not checked yet (they must stay idle ${Math.round(s.coverageSettleMs / 1000)} s first)`);
  if (s.journalPressure) items.push(`broker disk pressure: ${s.journalPressure}`);
  for (const n of s.brokerNodes) if (n.memAlarm || n.diskFreeAlarm) items.push(`broker node ${n.name} has a ${n.memAlarm ? 'memory' : 'disk'} alarm`);
  const list = items.map((text) => el('li', { text }));
  $('attention').replaceChildren(...(list.length > 0 ? list : [el('li', { className: 'ok', text: 'nothing: every protected queue is captured and inside the latest cut' })]));
}

function renderTimeline(checkpoints) {
  const width = 960;
  const height = 200;
  const pad = { left: 64, right: 12, top: 12, bottom: 34 };
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `timeline of ${checkpoints.length} checkpoint(s) by size`);
  svg.id = 'timeline';
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const max = Math.max(1, ...checkpoints.map((c) => c.bodyBytes));
  for (const f of [0, 0.5, 1]) {
    const y = pad.top + plotH * (1 - f);
    add('line', { class: 'grid', x1: pad.left, x2: width - pad.right, y1: y, y2: y });
    add('text', { x: pad.left - 6, y: y + 4, 'text-anchor': 'end' }, formatBytes(max * f));
  }
  add('line', { class: 'axis', x1: pad.left, x2: width - pad.right, y1: pad.top + plotH, y2: pad.top + plotH });
  if (checkpoints.length === 0) {
    add('text', { x: pad.left + plotW / 2, y: pad.top + plotH / 2, 'text-anchor': 'middle' }, 'no checkpoint yet: tidemark checkpoint --wait takes one');
  }
  const slot = plotW / Math.max(checkpoints.length, 1);
  const barW = Math.max(1, Math.min(36, slot * 0.7));
  checkpoints.forEach((c, i) => {
    const h = Math.max(2, (c.bodyBytes / max) * plotH);
    const x = pad.left + slot * i + (slot - barW) / 2;
    const marked = c.incompleteQueues > 0 || c.outsideQueues > 0;
    const bar = add('rect', { class: `bar ${c.full ? 'full' : 'incremental'}${marked ? ' marked' : ''}`, x, y: pad.top + plotH - h, width: barW, height: h, 'data-epoch': c.epoch });
    const title = document.createElementNS(SVG, 'title');
    title.textContent = `checkpoint #${c.epoch} · ${formatBytes(c.bodyBytes)} · ${formatCount(c.messages)} messages in ${c.queues} queue(s) · ${c.full ? 'full' : 'incremental'} · ${formatTime(c.committedAtMs)}`;
    bar.append(title);
  });
  // Labels under the first, the middle and the last bar, so times read without crowding.
  const labelled = [...new Set([0, Math.floor((checkpoints.length - 1) / 2), checkpoints.length - 1])].filter((i) => i >= 0);
  for (const i of labelled) {
    const c = checkpoints[i];
    const x = pad.left + slot * i + slot / 2;
    add('text', { x, y: height - 18, 'text-anchor': 'middle' }, `#${c.epoch}`);
    add('text', { x, y: height - 4, 'text-anchor': 'middle' }, new Date(c.committedAtMs).toLocaleTimeString());
  }
  $('timeline-chart').replaceChildren(svg);
}

function renderCheckpoints(reply) {
  renderTimeline(reply.checkpoints);
  fillRows(
    'checkpoints',
    reply.checkpoints
      .slice(-10)
      .reverse()
      .map((c) => {
        const marks = [c.incompleteQueues > 0 && `${c.incompleteQueues} possibly incomplete`, c.outsideQueues > 0 && `${c.outsideQueues} outside the cut`].filter(Boolean).join(', ');
        return el('tr', { data: { epoch: c.epoch } }, td(`#${c.epoch}`, 'num'), td(formatTime(c.committedAtMs)), td(c.full ? 'full' : `incremental on #${c.parentEpoch}`), td(formatCount(c.queues), 'num'), td(formatCount(c.messages), 'num'), td(formatBytes(c.bodyBytes), 'num'), td(marks || '—'));
      }),
    'no checkpoint yet',
    7,
  );
}

function renderRestores(reply) {
  fillRows(
    'restores',
    reply.restores.slice(0, 20).map((r) => {
      // Done counts as complete even when there was nothing to publish.
      const percent = r.state === 'done' ? 100 : r.messages > 0 ? Math.min(100, Math.floor((r.confirmed / r.messages) * 100)) : 0;
      const progress = el('progress', { title: `${percent} %` });
      progress.max = 100;
      progress.value = percent;
      return el(
        'tr',
        { data: { restoreId: r.restoreId } },
        td(r.restoreId),
        td(`#${r.checkpoint}`, 'num'),
        el('td', { className: `state ${r.state}`, text: r.state }),
        el('td', {}, progress, el('span', { className: 'percent', text: `${percent} %` })),
        td(`${r.doneQueues}${r.failedQueues ? ` + ${r.failedQueues} failed` : ''} / ${r.queues}`, 'num'),
        td(`${formatCount(r.confirmed)} / ${formatCount(r.messages)}`, 'num'),
        td(formatTime(r.createdAtMs)),
        td(formatTime(r.updatedAtMs)),
      );
    }),
    'no restore in the last 7 days',
    8,
  );
}

function renderRetention(view) {
  const p = view.policy;
  $('retention-policy').textContent =
    `Policy: last ${p.keepLast}, everything within ${formatDuration(p.keepWithinMs)}, ${p.keepDaily} daily, ${p.keepWeekly} weekly, ${p.keepMonthly} monthly; ` +
    `history for ${formatDuration(p.historyMs)}; grace ${formatDuration(view.graceMs)}; the leader prunes every ${formatDuration(view.pruneIntervalMs)}.`;
  fillRows(
    'retention',
    [...view.keep].reverse().slice(0, 15).map((k) => el('tr', { data: { epoch: k.epoch } }, td(`#${k.epoch}`, 'num'), td(k.reasons.join('; ')))),
    'nothing kept: no checkpoint yet',
    2,
  );
  $('retention-drop').textContent =
    view.drop.length === 0 ? 'The next prune deletes no checkpoint.' : `The next prune may delete ${view.drop.length} checkpoint(s): ${view.drop.slice(0, 20).map((e) => `#${e}`).join(', ')}${view.drop.length > 20 ? ', …' : ''}.`;
}

async function refresh() {
  clearTimeout(timer);
  try {
    const [status, checkpoints, restores, retention] = await Promise.all([api('/api/status'), api('/api/checkpoints'), api('/api/restores'), api('/api/retention')]);
    renderStatus(status);
    renderCheckpoints(checkpoints);
    renderRestores(restores);
    renderRetention(retention);
    $('updated').textContent = new Date(status.generatedAtMs).toLocaleTimeString();
    $('fetch-error').hidden = true;
    $('page').hidden = false;
    $('login').hidden = true;
  } catch (err) {
    if (err.refused) return signOut(`The coordinator refused this token: ${err.message}`);
    $('fetch-error').hidden = false;
    $('fetch-error').textContent = `Could not refresh (${err.message}); retrying. What is shown may be out of date.`;
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

function signOut(message) {
  clearTimeout(timer);
  sessionStorage.removeItem(TOKEN_KEY);
  $('page').hidden = true;
  $('login').hidden = false;
  $('sign-out').hidden = true;
  $('signed-in').hidden = true;
  $('leader').hidden = true;
  $('coordinator-id').textContent = '';
  $('login-error').hidden = !message;
  $('login-error').textContent = message ?? '';
  $('token').focus();
}

function signIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  $('login-error').hidden = true;
  $('sign-out').hidden = false;
  refresh();
}

$('login-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const token = $('token').value.trim();
  $('token').value = '';
  if (token) signIn(token);
});
$('sign-out').addEventListener('click', () => signOut());

if (sessionStorage.getItem(TOKEN_KEY)) signIn(sessionStorage.getItem(TOKEN_KEY));
else signOut();
