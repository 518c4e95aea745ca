'use strict';
const csrf = document.querySelector('meta[name=csrf]').content;
const ves = new Map();
let selected = null, currentOp = null;

async function api(method, url, body) {
  const res = await fetch(url, { method, headers: { 'Content-Type': 'application/json', 'X-CSRF-TOKEN': csrf }, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) throw new Error((data && (data.errors ? Object.values(data.errors).flat().join(' ') : data.detail || data.title)) || res.statusText);
  return data;
}
const el = (id) => document.getElementById(id);
const human = (b) => b == null ? '' : b > 1 << 30 ? (b / (1 << 30)).toFixed(1) + 'G' : (b / (1 << 20)).toFixed(1) + 'M';

function render() {
  const body = el('ves');
  body.replaceChildren();
  for (const v of [...ves.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    const tr = document.createElement('tr');
    tr.dataset.name = v.name; tr.dataset.id = v.id;
    const cells = [v.name, v.kind, v.state, v.cpus ?? '', v.memory ?? '', human(v.usage?.memoryUsedBytes), v.usage?.cpuTime ?? ''];
    cells.forEach((text, i) => { const td = document.createElement('td'); td.textContent = text; if (i === 2) td.className = 'state state-' + text; tr.append(td); });
    const td = document.createElement('td');
    for (const [label, action] of [['Open', 'open'], ['Start', 'start'], ['Stop', 'stop'], ['Restart', 'restart'], ['Delete', 'delete']]) {
      const b = document.createElement('button'); b.textContent = label; b.className = 'act-' + action;
      b.onclick = () => act(v, action); td.append(b);
    }
    tr.append(td); body.append(tr);
  }
}

async function act(v, action) {
  try {
    if (action === 'open') return open(v);
    if (action === 'delete') { if (!confirm('Delete ' + v.name + '?')) return; await api('DELETE', '/api/ves/' + v.id); ves.delete(v.id); if (selected?.id === v.id) el('detail').hidden = true; render(); return; }
    Object.assign(v, await api('POST', `/api/ves/${v.id}/${action}`)); render();
  } catch (e) { alert(e.message); }
}

async function open(v) {
  selected = v; el('detail').hidden = false; el('detail-name').textContent = v.name; el('detail-kind').textContent = v.kind === 'Vm' ? 'VM' : 'Container';
  el('set-memory').value = v.memory; el('set-cpus').value = v.cpus ?? 1; el('exec-output').textContent = '';
  await loadBackups();
}

async function loadBackups() {
  const list = await api('GET', `/api/ves/${selected.id}/backups`);
  const body = el('backups'); body.replaceChildren();
  for (const b of list) {
    const tr = document.createElement('tr'); tr.dataset.id = b.id;
    for (const t of [b.id, b.type, b.parentId ?? '', new Date(b.createdAt).toLocaleString(), human(b.sizeBytes)]) { const td = document.createElement('td'); td.textContent = t; tr.append(td); }
    const td = document.createElement('td');
    const r = document.createElement('button'); r.textContent = 'Restore'; r.className = 'restore';
    r.onclick = async () => { try { track(await api('POST', `/api/backups/${b.id}/restore`, {})); } catch (e) { alert(e.message); } };
    const d = document.createElement('button'); d.textContent = 'Delete'; d.className = 'delete-backup';
    d.onclick = async () => { try { await api('DELETE', `/api/backups/${b.id}`); await loadBackups(); } catch (e) { alert(e.message); } };
    td.append(r, d); tr.append(td); body.append(tr);
  }
}

const seenOps = new Map();
// The operation may have moved on (or finished) before its POST answered: show the newest state known, then catch up once.
async function track(op) {
  currentOp = op.id; showOp(seenOps.get(op.id) ?? op);
  try { showOp(await api('GET', '/api/operations/' + op.id)); } catch { /* gone */ }
}
const rank = { running: 0, succeeded: 1, failed: 1, cancelled: 1 };
function showOp(op) {
  const known = seenOps.get(op.id);
  if (known && rank[known.status] > rank[op.status]) op = known;
  const first = !known || known.status !== op.status;
  seenOps.set(op.id, op);
  // A migration that succeeded took the VE to another host: it leaves this list for the "moved" one.
  if (first && op.status === 'succeeded' && op.kind.startsWith('migration')) {
    el('moved-last').textContent = op.result;
    ves.delete(op.veId); render(); loadMigrations().catch(() => {});
    if (selected?.id === op.veId) { selected = null; el('detail').hidden = true; }
  }
  if (op.id !== currentOp) return;
  el('op').hidden = false; el('op-kind').textContent = op.kind; el('op-stage').textContent = op.stage;
  const p = el('op-progress'); if (op.total) { p.max = op.total; p.value = op.completed; } else p.removeAttribute('value');
  el('op-status').textContent = op.status + (op.error ? ': ' + op.error : '');
  el('op').dataset.status = op.status;
  el('op-cancel').disabled = op.status !== 'running';
  if (op.status !== 'running' && selected) loadBackups().catch(() => {});
}

el('create-form').onsubmit = async (e) => {
  e.preventDefault(); el('create-error').textContent = '';
  try {
    const v = await api('POST', '/api/containers', { name: el('create-name').value, template: el('create-template').value, memory: el('create-memory').value, cpus: +el('create-cpus').value });
    ves.set(v.id, v); render();
  } catch (err) { el('create-error').textContent = err.message; }
};
el('vm-form').onsubmit = async (e) => {
  e.preventDefault(); el('vm-error').textContent = '';
  try {
    const v = await api('POST', '/api/vms', { name: el('vm-name').value, image: el('vm-image').value, memory: el('vm-memory').value, cpus: +el('vm-cpus').value });
    ves.set(v.id, v); render();
  } catch (err) { el('vm-error').textContent = err.message; }
};
async function loadImages() {
  const select = el('vm-image'); select.replaceChildren();
  for (const i of await api('GET', '/api/images')) {
    const o = document.createElement('option'); o.value = i.name;
    o.textContent = i.kind === 'kernel' ? i.name + ' (direct kernel boot)' : i.name + ' (' + human(i.sizeBytes) + ')';
    select.append(o);
  }
  el('vm-create').disabled = select.options.length === 0;
}
async function loadMemoryManager() {
  const m = await api('GET', '/api/admin/memory/manager');
  const k = m.ksm;
  el('mm-ksm').textContent = k ? `KSM: ${k.running ? 'merging' : 'idle'} (mode ${k.mode}${k.managed ? ', managed by the panel' : ', not managed by the panel'}), ${k.pagesSharing} pages saved (${human(k.savedBytes)}), ${k.fullScans} full scans` : 'KSM: not available on this kernel';
  const body = el('mm-ves'); body.replaceChildren();
  if (!m.running) { el('mm-summary').textContent = 'The memory manager does not run in this panel (Panel:MemoryManagement:Enabled).'; el('mm-set').disabled = true; return; }
  el('mm-summary').textContent = `policy ${m.policy}; RAM ${human(m.totalBytes)}, reserve ${human(m.reserveBytes)}, available to VEs ${human(m.availableBytes)}, guaranteed ${human(m.guaranteedBytes)}, free ${human(m.freeBytes)}`;
  el('mm-policy').value = m.policy;
  for (const v of m.ves) {
    const tr = document.createElement('tr'); tr.dataset.id = v.id;
    for (const t of [v.name, v.kind, v.tenant ?? '(none)', human(v.protectedBytes), v.targetBytes == null ? '' : human(v.targetBytes), human(v.limitBytes), human(v.usageBytes), v.stallMicroseconds]) { const td = document.createElement('td'); td.textContent = t; tr.append(td); }
    body.append(tr);
  }
}
el('set').onclick = async () => {
  el('set-error').textContent = '';
  try { Object.assign(selected, await api('PUT', `/api/ves/${selected.id}/resources`, { memory: el('set-memory').value, cpus: +el('set-cpus').value })); render(); }
  catch (e) { el('set-error').textContent = e.message; }
};
el('exec-run').onclick = async () => {
  try { const r = await api('POST', `/api/ves/${selected.id}/exec`, { command: el('exec-command').value }); el('exec-output').textContent = r.standardOutput + r.standardError + `\n[exit ${r.exitCode}]`; }
  catch (e) { el('exec-output').textContent = e.message; }
};
el('backup-full').onclick = async () => { try { track(await api('POST', `/api/ves/${selected.id}/backups`, { full: true })); } catch (e) { alert(e.message); } };
el('backup-incr').onclick = async () => { try { track(await api('POST', `/api/ves/${selected.id}/backups`, { full: false })); } catch (e) { alert(e.message); } };
el('migrate').onclick = async () => {
  el('migrate-error').textContent = '';
  const destination = el('migrate-destination').value;
  if (!confirm(`Move ${selected.name} to ${destination}? It will no longer be on this host.`)) return;
  try { track(await api('POST', `/api/ves/${selected.id}/migrate`, { destination })); } catch (e) { el('migrate-error').textContent = e.message; }
};
async function loadDestinations() {
  const select = el('migrate-destination'); select.replaceChildren();
  for (const d of await api('GET', '/api/migration/destinations')) { const o = document.createElement('option'); o.value = o.textContent = d.name; select.append(o); }
  el('migrate-row').hidden = select.options.length === 0;
}
async function loadMigrations() {
  const list = await api('GET', '/api/migrations');
  const body = el('migrated'); body.replaceChildren();
  for (const m of list) {
    const tr = document.createElement('tr'); tr.dataset.id = m.id;
    const downtime = m.transferMeasured ? Math.round(m.downtimeMilliseconds) + ' ms' : 'not reported';
    for (const t of [m.name, m.kind, m.destination, m.mode, downtime, m.transferMeasured ? human(m.diskBytes) : '', m.transferMeasured ? human(m.memoryBytes) : '', new Date(m.at).toLocaleString()]) { const td = document.createElement('td'); td.textContent = t; tr.append(td); }
    tr.title = m.reason; body.append(tr);
  }
  el('moved').hidden = list.length === 0;
}
el('op-cancel').onclick = () => currentOp && api('POST', `/api/operations/${currentOp}/cancel`).catch(() => {});

// Live state, usage and progress: one server-sent event stream, fed by the SDK's WatchAsync on the server.
const events = new EventSource('/api/events');
events.onopen = () => { el('live').textContent = 'live'; };
events.onerror = () => { el('live').textContent = 'reconnecting…'; };
// Events are applied strictly in order (one chain), and a state change takes the state the event carries, so a
// slow lookup for an earlier event can never overwrite a later state.
let applying = Promise.resolve();
events.addEventListener('ve', (m) => {
  const e = JSON.parse(m.data);
  applying = applying.then(async () => {
    const known = ves.get(e.id);
    if (e.event === 'Deleted') ves.delete(e.id);
    else if (known) { known.state = e.state; known.name = e.name; }
    else { try { ves.set(e.id, await api('GET', '/api/ves/' + e.id)); } catch { /* gone or not ours */ } }
    render();
  });
});
events.addEventListener('usage', (m) => { const u = JSON.parse(m.data); const v = ves.get(u.id); if (v) { v.usage = u; render(); } });
events.addEventListener('operation', (m) => showOp(JSON.parse(m.data)));

(async () => {
  for (const v of await api('GET', '/api/ves')) ves.set(v.id, v);
  render();
  loadImages().catch(() => {});
  loadDestinations().catch(() => {});
  loadMigrations().catch(() => {});
  if (document.body.dataset.admin === 'true') {
    el('admin').hidden = false;
    const m = await api('GET', '/api/admin/memory');
    el('memory').textContent = `capacity ${human(m.capacityBytes)}, guaranteed ${human(m.reservedBytes)}, free ${human(m.availableBytes)}\n` + m.reservations.map(r => `${r.veId} ${r.kind} ${human(r.guaranteeBytes)}`).join('\n');
    el('mm-set').onclick = async () => { el('mm-error').textContent = ''; try { await api('PUT', '/api/admin/memory/policy', { policy: el('mm-policy').value }); await loadMemoryManager(); } catch (e) { el('mm-error').textContent = e.message; } };
    await loadMemoryManager().catch((e) => { el('mm-summary').textContent = e.message; });
    el('user-create').onclick = async () => { try { await api('POST', '/api/admin/users', { name: el('user-name').value, password: el('user-password').value }); el('user-result').textContent = 'created'; } catch (e) { el('user-result').textContent = e.message; } };
  }
})();
