/**
 * The operator console's single page (same rules as the viewer page: inline CSS/JS under a CSP nonce, no
 * external request, every server value rendered with textContent; only our own diagram SVG is markup).
 * It reads the store through /api/console/* and refreshes by polling: syncs run in other processes, whose
 * transitions this server never sees as events.
 */
import { CSS } from './page.js';
import { BROWSER_HELPERS } from './browser-helpers.js';

const CONSOLE_CSS = `
.filters { display:grid; grid-template-columns: 1fr 1fr; gap:6px 8px; padding:10px 12px; }
.filters label { font-size:11.5px; color:var(--muted); display:flex; flex-direction:column; gap:2px; min-width:0; }
.filters input, .filters select { font:inherit; font-size:12.5px; padding:3px 6px; border:1px solid #c3cad2; border-radius:5px; width:100%; min-width:0; }
.filters .row { grid-column: 1 / -1; display:flex; gap:8px; align-items:center; }
.filters .err { color:var(--failed); font-size:12px; }
.tabs { display:flex; gap:4px; padding:8px 12px 0; }
.tabs button.on { background:#1f2933; color:#fff; border-color:#1f2933; }
.more { padding:6px 12px; }
header .mode { font-size:12px; padding:2px 8px; border-radius:10px; background:#495057; }
header .mode.act { background:#2f9e44; }
.diagram.focus svg { width:100%; height:auto; display:block; }
`;

const SCRIPT = `
'use strict';
var state = { about: null, filter: {}, syncs: [], next: null, selected: null, tenant: 'default', detail: null, focus: true, kind: 'breaker', seq: 0 };
${BROWSER_HELPERS}
function time(ms) { return ms ? new Date(ms).toLocaleString() : ''; }
function age(ms) { var m = Math.round((Date.now() - ms) / 60000); return m < 1 ? 'just now' : m < 120 ? m + ' min ago' : Math.round(m / 60) + ' h ago'; }
function query(obj) {
  var parts = [];
  for (var k in obj) if (obj[k] !== '' && obj[k] != null) parts.push(encodeURIComponent(k) + '=' + encodeURIComponent(obj[k]));
  return parts.length ? '?' + parts.join('&') : '';
}
function canAct() { return state.about && state.about.actions.enabled; }

function readFilter() {
  return { status: $('#f-status').value, provider: $('#f-provider').value.trim(), tenant: $('#f-tenant').value.trim(),
    olderThan: $('#f-older').value.trim(), newerThan: $('#f-newer').value.trim() };
}
function applyFilter(ev) {
  if (ev) ev.preventDefault();
  state.filter = readFilter();
  loadSyncs(false);
}
function loadSyncs(more) {
  var q = Object.assign({}, state.filter, more && state.next ? { after: state.next } : {});
  return api('GET', '/api/console/syncs' + query(q)).then(function (r) {
    $('#filter-error').textContent = '';
    state.syncs = more ? state.syncs.concat(r.syncs) : r.syncs; state.next = r.next; renderSyncs();
  }).catch(function (e) { $('#filter-error').textContent = e.message; });
}
function syncItem(s, testid) {
  return el('li', { class: 'sync' + (s.syncId === state.selected ? ' selected' : ''), 'data-testid': testid, 'data-sync': s.syncId, 'data-status': s.status,
      onclick: function () { select(s.syncId, s.tenantId); } },
    el('div', { class: 'grow' },
      el('div', { text: s.provider + ' \\u00b7 ' + s.connectionId }),
      el('div', { class: 'sub', text: s.state + ' \\u00b7 tenant ' + s.tenantId + ' \\u00b7 updated ' + age(s.updatedAt) })),
    badge(s.status));
}
function renderSyncs() {
  var list = $('#syncs'); list.replaceChildren();
  if (state.syncs.length === 0) list.appendChild(el('li', { class: 'sub', text: 'No syncs match.' }));
  state.syncs.forEach(function (s) { list.appendChild(syncItem(s, 'sync-row')); });
  $('#more').style.display = state.next ? '' : 'none';
}
function loadStale() {
  var minutes = $('#stale-minutes').value.trim();
  return api('GET', '/api/console/stale' + query({ minutes: minutes })).then(function (r) {
    var list = $('#stale'); list.replaceChildren();
    if (r.syncs.length === 0) list.appendChild(el('li', { class: 'sub', text: 'No active sync is older than ' + r.minutes + ' min without progress.' }));
    r.syncs.forEach(function (s) { list.appendChild(syncItem(s, 'stale-row')); });
  }).catch(function (e) { toast(e.message); });
}
function retry(c, button) {
  if (button) button.disabled = true;
  return api('POST', '/api/console/connections/retry', { tenantId: c.tenantId, connectionId: c.connectionId, provider: c.provider })
    .then(function (r) { toast('Sync requested: ' + r.sync.syncId); loadSyncs(false); return select(r.sync.syncId, r.sync.tenantId); })
    .catch(function (e) { toast('Retry refused: ' + e.message); })
    .then(function () { if (button) button.disabled = false; });
}
function loadConnections() {
  return api('GET', '/api/console/connections' + query({ kind: state.kind })).then(function (r) {
    var list = $('#attention'); list.replaceChildren();
    if (r.connections.length === 0) list.appendChild(el('li', { class: 'sub', text: 'None.' }));
    r.connections.forEach(function (c) {
      var why = c.state === 'NEEDS_USER' && c.needsUser ? c.needsUser.reason + ': ' + c.needsUser.message
        : c.state === 'DISABLED' ? c.consecutiveFailures + ' failure(s) in a row'
        : c.cooldownUntil ? 'cooling down until ' + time(c.cooldownUntil) : c.state;
      var button = canAct() ? el('button', { 'data-testid': 'retry', text: 'Retry', onclick: function () { retry(c, button); } }) : null;
      list.appendChild(el('li', { class: 'conn', 'data-testid': 'attention-row', 'data-connection': c.connectionId },
        el('div', { class: 'grow' }, el('div', { class: 'name', text: c.provider + ' \\u00b7 ' + c.connectionId }),
          el('div', { class: 'sub', title: why, text: c.state + ' \\u00b7 ' + why })), button));
    });
  }).catch(function (e) { toast(e.message); });
}
function setKind(kind) {
  state.kind = kind;
  document.querySelectorAll('.tabs button').forEach(function (b) { b.classList.toggle('on', b.getAttribute('data-kind') === kind); });
  loadConnections();
}

function select(syncId, tenantId) {
  state.selected = syncId; state.tenant = tenantId || 'default';
  history.replaceState(null, '', '#sync=' + encodeURIComponent(syncId) + '&tenant=' + encodeURIComponent(state.tenant));
  renderSyncs();
  return loadDetail();
}
function loadDetail() {
  if (!state.selected) return Promise.resolve();
  var seq = ++state.seq;
  return api('GET', '/api/console/syncs/' + encodeURIComponent(state.selected) + query({ tenant: state.tenant })).then(function (d) {
    if (seq !== state.seq) return;
    var changed = !state.detail || state.detail.sync.version !== d.sync.version || state.detail.sync.syncId !== d.sync.syncId;
    state.detail = d; if (changed) renderDetail();
  }).catch(function (e) { toast(e.message); });
}

/** Shows the window of the diagram around the current state (or the whole diagram). */
function focusDiagram(box) {
  var svg = box.querySelector('svg'); if (!svg) return;
  var full = svg.viewBox.baseVal, cur = svg.querySelector('.bs-current');
  box.setAttribute('data-full', full.width + ' ' + full.height);
  svg.removeAttribute('height'); svg.setAttribute('width', '100%');
  if (!state.focus || !cur) { box.setAttribute('data-focus', 'all'); return; }
  var b = cur.getBBox(), pad = 60;
  var w = Math.min(full.width, Math.max(b.width + 2 * pad, 900)), h = Math.min(full.height, Math.max(b.height + 2 * pad, 520));
  var x = Math.max(0, Math.min(full.width - w, b.x + b.width / 2 - w / 2)), y = Math.max(0, Math.min(full.height - h, b.y + b.height / 2 - h / 2));
  svg.setAttribute('viewBox', [x, y, w, h].map(function (n) { return Math.round(n); }).join(' '));
  box.setAttribute('data-focus', 'current');
}

function renderDetail() {
  var d = state.detail, root = $('#detail');
  root.replaceChildren();
  if (!d) { root.appendChild(el('div', { class: 'empty', text: 'Select a sync.' })); return; }
  var s = d.sync;
  root.appendChild(el('h2', {}, 'Sync ', el('code', { class: 'id', text: s.syncId })));
  var cancel = s.active && canAct() ? el('button', { 'data-testid': 'cancel', text: 'Cancel sync', onclick: function () {
    cancel.disabled = true;
    api('POST', '/api/console/syncs/' + encodeURIComponent(s.syncId) + '/cancel', { tenantId: s.tenantId })
      .then(function (r) { toast('Cancelled: ' + r.sync.status); state.detail = null; loadDetail(); loadSyncs(false); loadStale(); })
      .catch(function (e) { toast('Cancel refused: ' + e.message); cancel.disabled = false; });
  } }) : null;
  var again = !s.active && canAct() ? el('button', { 'data-testid': 'retry-sync', text: 'Sync this connection again', onclick: function () { retry(s, again); } }) : null;
  root.appendChild(el('div', { class: 'summary' },
    el('span', { class: 'big', id: 'sync-status', 'data-testid': 'sync-status', text: s.status }),
    el('span', { class: 'kv' }, 'state ', el('b', { id: 'sync-state', 'data-testid': 'sync-state', text: s.state })),
    el('span', { class: 'kv' }, 'tenant ', el('b', { text: s.tenantId })),
    el('span', { class: 'kv' }, 'connection ', el('b', { text: s.connectionId })),
    el('span', { class: 'kv' }, 'provider ', el('b', { text: s.provider })),
    el('span', { class: 'kv' }, 'started ', el('b', { text: time(s.createdAt) })),
    el('span', { class: 'kv' }, 'updated ', el('b', { text: time(s.updatedAt) })),
    cancel, again));
  if (s.challenge) {
    root.appendChild(el('div', { class: 'notice', 'data-testid': 'challenge' }, el('b', { text: 'Waiting for the user (' + s.challenge.kind + ')' }), ' ',
      s.challenge.message || '', el('div', { class: 'sub', text: 'Only the user can answer; the app shows them this challenge.' })));
  }
  if (s.result) root.appendChild(el('div', { class: 'notice ok', 'data-testid': 'result' }, el('b', { text: 'Result: ' + s.result.outcome })));
  if (s.error) root.appendChild(el('div', { class: 'notice error', 'data-testid': 'error' }, el('b', { text: s.error.code }), ' ' + s.error.message));
  var diagram = el('div', { class: 'diagram focus', id: 'diagram', 'data-testid': 'diagram' });
  diagram.innerHTML = d.svg; // generated by banksync from the machine definition (see src/viz)
  root.appendChild(el('div', { class: 'toolbar' },
    el('b', { text: 'Machine: ' + d.machine }),
    el('button', { 'data-testid': 'focus-toggle', text: state.focus ? 'Whole diagram' : 'Zoom to current state', onclick: function () { state.focus = !state.focus; renderDetail(); } }),
    el('span', { class: 'hint', text: 'current state: orange fill; path taken: orange edges, visited states pale yellow' })));
  root.appendChild(diagram);
  focusDiagram(diagram);
  var rows = d.history.slice().reverse().map(function (t) {
    return el('tr', {}, el('td', { text: String(t.seq) }), el('td', { text: time(t.at) }), el('td', { text: t.from || '\\u2014' }),
      el('td', { text: '\\u2192 ' + t.to }), el('td', { class: 'event', title: t.event, text: t.event }));
  });
  root.appendChild(el('h2', { text: 'History (' + d.history.length + ' transitions, newest first)' }));
  root.appendChild(el('div', { class: 'history' }, el('table', { 'data-testid': 'history' },
    el('thead', {}, el('tr', {}, el('th', { text: '#' }), el('th', { text: 'at' }), el('th', { text: 'from' }), el('th', { text: 'to' }), el('th', { text: 'event' }))),
    el('tbody', {}, ...rows))));
}

function refresh() {
  var busy = refresh.busy; if (busy) return; refresh.busy = true;
  Promise.all([loadSyncs(false), loadStale(), loadConnections(), loadDetail()]).then(function () { refresh.busy = false; });
}

api('GET', '/api/console/about').then(function (about) {
  state.about = about;
  var mode = $('#mode');
  mode.textContent = about.actions.enabled ? 'retry and cancel enabled' : 'read-only';
  mode.title = about.actions.enabled ? '' : about.actions.reason;
  mode.classList.toggle('act', about.actions.enabled);
  $('#store-kind').textContent = about.store;
  $('#filters').addEventListener('submit', applyFilter);
  $('#more').addEventListener('click', function () { loadSyncs(true); });
  $('#stale-form').addEventListener('submit', function (ev) { ev.preventDefault(); loadStale(); });
  document.querySelectorAll('.tabs button').forEach(function (b) { b.addEventListener('click', function () { setKind(b.getAttribute('data-kind')); }); });
  var m = /sync=([^&]+)(?:&tenant=([^&]+))?/.exec(location.hash);
  state.filter = readFilter();
  return Promise.all([loadSyncs(false), loadStale(), loadConnections()]).then(function () {
    if (m) select(decodeURIComponent(m[1]), m[2] ? decodeURIComponent(m[2]) : 'default');
    else if (state.syncs[0]) select(state.syncs[0].syncId, state.syncs[0].tenantId);
    else renderDetail();
    document.body.setAttribute('data-ready', 'true');
    setInterval(refresh, 4000);
  });
}).catch(function (e) { toast('Could not load: ' + e.message); });
`;

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export function renderConsolePage(options: { nonce: string; title: string; machine: string }): string {
  const title = escapeHtml(options.title);
  const statuses = ['', 'QUEUED', 'RUNNING', 'AWAIT_AUTH', 'COMPLETED', 'FAILED'].map((s) => `<option value="${s}">${s || 'any'}</option>`).join('');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title>
<style>${CSS}${CONSOLE_CSS}</style>
</head>
<body>
<header>
  <h1>${title}</h1>
  <span class="meta">store <b id="store-kind"></b> &middot; machine <b>${escapeHtml(options.machine)}</b></span>
  <span class="mode" id="mode" data-testid="mode"></span>
</header>
<main>
  <div>
    <section><h2>Syncs</h2>
      <form class="filters" id="filters" data-testid="filters">
        <label>state<select id="f-status" name="status">${statuses}</select></label>
        <label>provider<input id="f-provider" name="provider" placeholder="any"></label>
        <label>tenant<input id="f-tenant" name="tenant" placeholder="any"></label>
        <label>older than (min)<input id="f-older" name="olderThan" inputmode="numeric"></label>
        <label>newer than (min)<input id="f-newer" name="newerThan" inputmode="numeric"></label>
        <div class="row"><button class="primary" type="submit" data-testid="apply">Apply</button><span class="err" id="filter-error" data-testid="filter-error"></span></div>
      </form>
      <ul class="list" id="syncs" data-testid="syncs"></ul>
      <div class="more"><button id="more" type="button" style="display:none">More</button></div>
    </section>
    <section style="margin-top:14px"><h2>Stale syncs</h2>
      <form class="filters" id="stale-form"><label>active, no progress for (min)<input id="stale-minutes" value="15" inputmode="numeric" data-testid="stale-minutes"></label>
        <div class="row"><button type="submit" data-testid="stale-apply">Show</button></div></form>
      <ul class="list" id="stale" data-testid="stale"></ul>
    </section>
    <section style="margin-top:14px"><h2>Connections needing attention</h2>
      <div class="tabs"><button type="button" class="on" data-kind="breaker">Stopped (breaker)</button><button type="button" data-kind="user">Waiting for the user</button><button type="button" data-kind="cooldown">Cooling down</button></div>
      <ul class="list" id="attention" data-testid="attention"></ul>
    </section>
  </div>
  <section id="detail" data-testid="detail"></section>
</main>
<div id="toast" role="status" data-testid="toast"></div>
<script nonce="${escapeHtml(options.nonce)}">${SCRIPT}</script>
</body>
</html>
`;
}
