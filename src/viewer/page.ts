/**
 * The viewer's single page: HTML with inline CSS and JS (no CDN, no external request; CSP nonce).
 * The script renders every server value with textContent; only the diagram SVG, which our own generator
 * produced from the machine definition, is inserted as markup.
 */
import { BROWSER_HELPERS } from './browser-helpers.js';

export const CSS = `
:root { --bg:#f6f7f9; --panel:#fff; --line:#dde1e6; --text:#1f2933; --muted:#6b7785; --accent:#1c7ed6;
  --queued:#868e96; --running:#1c7ed6; --await:#f08c00; --completed:#2f9e44; --failed:#e03131; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color:var(--text); background:var(--bg); }
header { display:flex; align-items:center; gap:16px; padding:10px 18px; background:#1f2933; color:#fff; }
header h1 { font-size:17px; margin:0; font-weight:650; }
header .meta { color:#c5cdd6; font-size:12.5px; }
header .live { margin-left:auto; font-size:12.5px; display:flex; align-items:center; gap:6px; }
header .dot { width:9px; height:9px; border-radius:50%; background:#868e96; display:inline-block; }
header .live.on .dot { background:#40c057; }
main { display:grid; grid-template-columns: 330px minmax(0, 1fr); gap:14px; padding:14px; align-items:start; }
section { background:var(--panel); border:1px solid var(--line); border-radius:8px; }
section > h2 { margin:0; padding:9px 12px; font-size:13px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); border-bottom:1px solid var(--line); }
.list { list-style:none; margin:0; padding:0; max-height:42vh; overflow:auto; }
.list li { padding:8px 12px; border-bottom:1px solid #f0f2f4; display:flex; gap:8px; align-items:center; }
.list li:last-child { border-bottom:0; }
.conn .name { font-weight:600; }
.conn .sub, .sync .sub { color:var(--muted); font-size:12px; overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
.grow { flex:1; min-width:0; }
code.id { text-transform:none; letter-spacing:0; font-size:12.5px; color:var(--text); }
.sync { cursor:pointer; }
.sync:hover { background:#f3f6fa; }
.sync.selected { background:#e7f1fb; box-shadow: inset 3px 0 0 var(--accent); }
button { font:inherit; font-size:12.5px; border:1px solid #c3cad2; background:#fff; border-radius:6px; padding:4px 10px; cursor:pointer; }
button.primary { background:var(--accent); border-color:var(--accent); color:#fff; }
button:disabled { opacity:.5; cursor:default; }
.badge { display:inline-block; font-size:11px; font-weight:700; letter-spacing:.03em; padding:2px 7px; border-radius:10px; color:#fff; background:var(--queued); white-space:nowrap; }
.badge.RUNNING { background:var(--running); } .badge.AWAIT_AUTH { background:var(--await); }
.badge.COMPLETED { background:var(--completed); } .badge.FAILED { background:var(--failed); }
#detail { min-height: 300px; min-width: 0; }
#detail .empty { padding:40px; color:var(--muted); text-align:center; }
.summary { display:flex; flex-wrap:wrap; gap:10px 28px; padding:12px 14px; border-bottom:1px solid var(--line); align-items:baseline; }
.summary .big { font-size:20px; font-weight:700; }
.kv { font-size:12.5px; color:var(--muted); } .kv b { color:var(--text); font-weight:600; }
.notice { margin:12px 14px 0; padding:10px 12px; border-radius:6px; background:#fff4e6; border:1px solid #ffd8a8; }
.notice.error { background:#fff5f5; border-color:#ffc9c9; }
.notice.ok { background:#ebfbee; border-color:#b2f2bb; }
.notice form { display:flex; gap:8px; margin-top:8px; }
.notice input { font:inherit; padding:4px 8px; border:1px solid #c3cad2; border-radius:6px; width:140px; }
.toolbar { display:flex; gap:8px; align-items:center; padding:10px 14px 0; }
.toolbar .hint { color:var(--muted); font-size:12px; margin-left:auto; }
.diagram { margin:10px 14px; border:1px solid var(--line); border-radius:6px; overflow:auto; background:#fff; max-height:72vh; }
.diagram.fit svg { width:100%; height:auto; display:block; }
.diagram svg { display:block; }
table { border-collapse:collapse; width:100%; font-size:12.5px; }
th, td { text-align:left; padding:5px 14px; border-bottom:1px solid #f0f2f4; white-space:nowrap; }
th { color:var(--muted); font-weight:600; }
td.event { color:var(--muted); }
.history { max-height:36vh; overflow:auto; margin-bottom:8px; }
#toast { position:fixed; right:16px; bottom:16px; background:#1f2933; color:#fff; padding:8px 12px; border-radius:6px; font-size:13px; display:none; max-width:420px; }
`;

const SCRIPT = `
'use strict';
var state = { syncs: [], connections: [], selected: null, detail: null, fit: false, detailSeq: 0, timer: null };
${BROWSER_HELPERS}
function time(ms) { return ms ? new Date(ms).toLocaleTimeString() : ''; }
function prettyEvent(type) {
  if (!type) return '';
  var m;
  if ((m = /^xstate\\.after\\.([^.]+)\\./.exec(type))) return 'after ' + m[1];
  if ((m = /^xstate\\.done\\.actor\\.(.+)$/.exec(type))) return 'done ' + m[1];
  if ((m = /^xstate\\.error\\.actor\\.(.+)$/.exec(type))) return 'error ' + m[1];
  if (type === 'xstate.init') return 'start';
  return type;
}

function upsert(view) {
  var i = state.syncs.findIndex(function (s) { return s.syncId === view.syncId; });
  if (i >= 0) { if (state.syncs[i].version > view.version) return; state.syncs[i] = view; }
  else state.syncs.unshift(view);
  renderSyncs(); renderConnections();
}

function renderConnections() {
  var list = $('#connections'); list.replaceChildren();
  var latest = {};
  state.syncs.forEach(function (s) { var k = s.provider + ' ' + s.connectionId; if (!latest[k]) latest[k] = s; });
  if (state.connections.length === 0) list.appendChild(el('li', { class: 'sub', text: 'No connections yet.' }));
  state.connections.forEach(function (c) {
    var last = latest[c.provider + ' ' + c.connectionId] || c.lastSync;
    var button = el('button', { class: 'primary', 'data-testid': 'sync-now', 'data-connection': c.connectionId, text: 'Sync now', onclick: function () { requestSync(c, button); } });
    list.appendChild(el('li', { class: 'conn', 'data-connection': c.connectionId },
      el('div', { class: 'grow' },
        el('div', { class: 'name', text: c.label || c.connectionId }),
        el('div', { class: 'sub', title: c.description || '', text: c.provider + ' \\u00b7 ' + c.connectionId })),
      last ? badge(last.status) : null,
      button));
  });
}

function renderSyncs() {
  var list = $('#syncs'); list.replaceChildren();
  if (state.syncs.length === 0) list.appendChild(el('li', { class: 'sub', text: 'No syncs yet: press "Sync now".' }));
  var labels = {};
  state.connections.forEach(function (c) { labels[c.provider + ' ' + c.connectionId] = c.label; });
  state.syncs.forEach(function (s) {
    var label = labels[s.provider + ' ' + s.connectionId] || s.connectionId;
    list.appendChild(el('li', { class: 'sync' + (s.syncId === state.selected ? ' selected' : ''), 'data-sync': s.syncId, onclick: function () { select(s.syncId); } },
      el('div', { class: 'grow' },
        el('div', { text: label }),
        el('div', { class: 'sub', text: s.state + ' \\u00b7 ' + time(s.updatedAt) })),
      badge(s.status)));
  });
}

function requestSync(c, button) {
  button.disabled = true;
  api('POST', '/api/syncs', { connectionId: c.connectionId, provider: c.provider })
    .then(function (res) { upsert(res.sync); return select(res.sync.syncId); })
    .catch(function (e) { toast('Sync not started: ' + e.message); })
    .then(function () { button.disabled = false; });
}

function select(syncId) {
  state.selected = syncId;
  history.replaceState(null, '', '#sync=' + encodeURIComponent(syncId));
  renderSyncs();
  return loadDetail();
}

function scheduleDetail() {
  if (state.timer) return;
  state.timer = setTimeout(function () { state.timer = null; loadDetail(); }, 60);
}

function loadDetail() {
  if (!state.selected) return Promise.resolve();
  var seq = ++state.detailSeq;
  return api('GET', '/api/syncs/' + encodeURIComponent(state.selected)).then(function (d) {
    if (seq !== state.detailSeq) return;
    state.detail = d; upsert(d.sync); renderDetail();
  }).catch(function (e) { toast(e.message); });
}

/** What the user typed per challenge id, until sent. */
var tanDrafts = {};

function challengeBox(sync) {
  var ch = sync.challenge;
  if (!ch) return null;
  var box = el('div', { class: 'notice', 'data-testid': 'challenge' },
    el('b', { text: 'Waiting for the user (' + ch.kind + ')' }), ' ', ch.message ? ch.message : '',
    ch.previousAttemptFailed ? el('div', { text: 'The previous answer was rejected; try again.' }) : null);
  if (ch.kind === 'REDIRECT' && ch.redirectUrl && /^https?:/.test(ch.redirectUrl)) {
    box.appendChild(el('div', {}, el('a', { href: ch.redirectUrl, target: '_blank', rel: 'noopener noreferrer', text: 'Open the bank login' })));
  }
  if (ch.kind === 'EMBEDDED') {
    var input = el('input', { name: 'tan', autocomplete: 'one-time-code', placeholder: 'TAN', 'aria-label': 'TAN' });
    // The detail re-renders on every committed transition (status polls included): keep what the user typed.
    input.value = tanDrafts[ch.id] || '';
    input.addEventListener('input', function () { tanDrafts[ch.id] = input.value; });
    var form = el('form', { onsubmit: function (ev) {
      ev.preventDefault();
      delete tanDrafts[ch.id];
      api('POST', '/api/syncs/' + encodeURIComponent(sync.syncId) + '/answer', { challengeId: ch.id, response: input.value })
        .then(function (res) { upsert(res.sync); input.value = ''; scheduleDetail(); })
        .catch(function (e) { toast('Answer not accepted: ' + e.message); });
    } }, input, el('button', { class: 'primary', type: 'submit', text: 'Send' }));
    box.appendChild(form);
  }
  return box;
}

function renderDetail() {
  var d = state.detail, root = $('#detail');
  root.replaceChildren();
  if (!d) { root.appendChild(el('div', { class: 'empty', text: 'Select a sync, or press "Sync now" on a connection.' })); return; }
  var s = d.sync;
  root.appendChild(el('h2', {}, 'Sync ', el('code', { class: 'id', text: s.syncId })));
  var cancel = s.active ? el('button', { text: 'Cancel sync', onclick: function () {
    api('POST', '/api/syncs/' + encodeURIComponent(s.syncId) + '/cancel', {}).then(function (res) { upsert(res.sync); scheduleDetail(); }).catch(function (e) { toast(e.message); });
  } }) : null;
  root.appendChild(el('div', { class: 'summary' },
    el('span', { class: 'big', id: 'sync-status', 'data-testid': 'sync-status', text: s.status }),
    el('span', { class: 'kv' }, 'state ', el('b', { id: 'sync-state', 'data-testid': 'sync-state', text: s.state })),
    el('span', { class: 'kv' }, 'connection ', el('b', { text: s.connectionId })),
    el('span', { class: 'kv' }, 'provider ', el('b', { text: s.provider })),
    el('span', { class: 'kv' }, 'scope ', el('b', { text: s.scope })),
    el('span', { class: 'kv' }, 'started ', el('b', { text: time(s.createdAt) })),
    el('span', { class: 'kv' }, 'updated ', el('b', { text: time(s.updatedAt) })),
    cancel));
  root.appendChild(challengeBox(s) || document.createTextNode(''));
  if (s.result) {
    var accounts = s.result.accounts || [];
    root.appendChild(el('div', { class: 'notice ok', 'data-testid': 'result' }, el('b', { text: 'Result: ' + s.result.outcome }), ' \\u00b7 ' + accounts.length + ' account(s): ' +
      accounts.map(function (a) { return a.accountId + ' ' + a.status; }).join(', ')));
  }
  if (s.error) {
    root.appendChild(el('div', { class: 'notice error', 'data-testid': 'error' }, el('b', { text: s.error.code }), ' ' + s.error.message));
  }
  var diagram = el('div', { class: 'diagram' + (state.fit ? ' fit' : ''), id: 'diagram', 'data-testid': 'diagram' });
  diagram.innerHTML = d.svg; // generated by banksync from the machine definition (see src/viz)
  root.appendChild(el('div', { class: 'toolbar' },
    el('b', { text: 'Machine: ' + d.machine }),
    el('button', { text: state.fit ? 'Actual size' : 'Fit to width', onclick: function () { state.fit = !state.fit; renderDetail(); } }),
    el('span', { class: 'hint', text: 'current state: orange fill; active parents: orange border' })));
  root.appendChild(diagram);
  // Keep the current state in view inside the diagram box (without scrolling the page).
  var cur = diagram.querySelector('.bs-current');
  if (cur) {
    var box = diagram.getBoundingClientRect(), at = cur.getBoundingClientRect();
    diagram.scrollTop += (at.top + at.height / 2) - (box.top + box.height / 2);
    diagram.scrollLeft += (at.left + at.width / 2) - (box.left + box.width / 2);
  }
  var rows = d.history.slice().reverse().map(function (t) {
    return el('tr', {}, el('td', { text: String(t.seq) }), el('td', { text: time(t.at) }), el('td', { text: t.from || '\\u2014' }),
      el('td', { text: '\\u2192 ' + t.to }), el('td', { class: 'event', title: t.event, text: prettyEvent(t.event) }));
  });
  root.appendChild(el('h2', { text: 'History (' + d.history.length + ' transitions, newest first)' }));
  root.appendChild(el('div', { class: 'history' }, el('table', { 'data-testid': 'history' },
    el('thead', {}, el('tr', {}, el('th', { text: '#' }), el('th', { text: 'at' }), el('th', { text: 'from' }), el('th', { text: 'to' }), el('th', { text: 'event' }))),
    el('tbody', {}, ...rows))));
}

function connect() {
  var es = new EventSource('/api/events');
  es.addEventListener('open', function () { $('#live').classList.add('on'); $('#live-text').textContent = 'live'; });
  es.addEventListener('error', function () { $('#live').classList.remove('on'); $('#live-text').textContent = 'reconnecting\\u2026'; });
  es.addEventListener('sync', function (ev) {
    var view = JSON.parse(ev.data);
    upsert(view);
    if (view.syncId === state.selected) scheduleDetail();
  });
}

Promise.all([api('GET', '/api/connections'), api('GET', '/api/syncs')]).then(function (r) {
  state.connections = r[0].connections; state.syncs = r[1].syncs;
  renderConnections(); renderSyncs(); renderDetail();
  var m = /sync=([^&]+)/.exec(location.hash);
  var initial = m ? decodeURIComponent(m[1]) : (state.syncs[0] && state.syncs[0].syncId);
  if (initial) select(initial);
  connect();
}).catch(function (e) { toast('Could not load: ' + e.message); });
`;

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export function renderPage(options: { nonce: string; title: string; machine: string }): string {
  const title = escapeHtml(options.title);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title>
<style>${CSS}</style>
</head>
<body>
<header>
  <h1>${title}</h1>
  <span class="meta">machine <b>${escapeHtml(options.machine)}</b> &middot; syncs from the engine, live</span>
  <span class="live" id="live"><span class="dot"></span><span id="live-text">connecting&hellip;</span></span>
</header>
<main>
  <div>
    <section><h2>Connections</h2><ul class="list" id="connections" data-testid="connections"></ul></section>
    <section style="margin-top:14px"><h2>Syncs</h2><ul class="list" id="syncs" data-testid="syncs"></ul></section>
  </div>
  <section id="detail" data-testid="detail"></section>
</main>
<div id="toast" role="status"></div>
<script nonce="${escapeHtml(options.nonce)}">${SCRIPT}</script>
</body>
</html>
`;
}
