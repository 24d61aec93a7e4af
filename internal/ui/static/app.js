// Portcullis web console. Plain JavaScript, no dependencies.
//
// Rules this file keeps (the Content-Security-Policy enforces most):
//   - server data reaches the page only as text (textContent, text nodes,
//     input values); never innerHTML, outerHTML, insertAdjacentHTML,
//     document.write, eval or a URL built from data (plugin descriptions
//     and audit details are attacker-controlled);
//   - every admin API call sends the session cookie (same-origin only) and
//     the CSRF token in X-CSRF-Token; the token lives in sessionStorage,
//     the session id in an HttpOnly cookie this script cannot read.
'use strict';

(() => {
  const CSRF_KEY = 'portcullis.csrf';
  const NAME_KEY = 'portcullis.principal';
  const PAGES = ['approvals', 'audit', 'violations', 'users', 'plugins'];

  const state = {
    csrf: sessionStorage.getItem(CSRF_KEY) || '',
    principal: sessionStorage.getItem(NAME_KEY) || '',
    page: '',
    timer: 0,
    flashTimer: 0,
  };

  const $ = (id) => document.getElementById(id);

  // el builds an element. props keys are fixed in this file (never data):
  // "class", "data" (dataset), "on" (listeners), or element properties.
  // Children are nodes or strings; strings become text nodes.
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'data') Object.assign(e.dataset, v);
      else if (k === 'on') for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
      else if (k.startsWith('aria-')) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  // clear empties a container.
  function clear(node) {
    node.replaceChildren();
    return node;
  }

  function fmtTime(s) {
    if (!s || s.startsWith('0001-01-01')) return '';
    const d = new Date(s);
    if (Number.isNaN(d.getTime())) return String(s);
    return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  }

  // when is a time for a table cell, kept on one line.
  function when(s) {
    return el('span', { class: 'nowrap' }, fmtTime(s));
  }

  function pretty(v) {
    if (v === undefined || v === null) return '';
    try {
      return JSON.stringify(v, null, 2);
    } catch {
      return String(v);
    }
  }

  function list(v) {
    return Array.isArray(v) ? v.join(', ') : '';
  }

  // table renders rows as a table with the given columns; each column is
  // [heading, function(row) -> string or node]. Empty: the empty text.
  function table(columns, rows, empty, rowProps) {
    if (!rows || rows.length === 0) return el('p', { class: 'empty' }, empty);
    return el('table', { class: 'grid' },
      el('thead', null, el('tr', null, columns.map(([h]) => el('th', null, h)))),
      el('tbody', null, rows.map((r) => el('tr', rowProps ? rowProps(r) : null,
        columns.map(([, f]) => el('td', null, f(r)))))));
  }

  // --- messages --------------------------------------------------------

  function flash(msg, isError) {
    const f = $('flash');
    f.textContent = msg;
    f.classList.toggle('is-error', !!isError);
    f.hidden = false;
    clearTimeout(state.flashTimer);
    state.flashTimer = setTimeout(() => { f.hidden = true; }, isError ? 10000 : 5000);
  }

  function showError(err) {
    if (err && err.status === 401) return; // signedOut already said so
    flash(err && err.message ? err.message : String(err), true);
  }

  // sectionError renders a failed load of one section in place.
  function sectionError(err) {
    if (err && err.status === 403) {
      return el('p', { class: 'error' }, 'You lack the admin permission for this area.');
    }
    return el('p', { class: 'error' }, err && err.message ? err.message : String(err));
  }

  // --- the admin API ---------------------------------------------------

  class APIError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const headers = { 'Accept': 'application/json', 'X-CSRF-Token': state.csrf };
    const init = { method, headers, credentials: 'same-origin', cache: 'no-store', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    if (resp.status === 401) {
      signedOut('Your session has ended. Sign in again.');
      throw new APIError(401, 'unauthenticated', 'Sign in again.');
    }
    if (!resp.ok) {
      let code = '';
      let msg = 'HTTP ' + resp.status;
      try {
        const j = await resp.json();
        code = String(j.error || '');
        msg = String(j.message || msg);
      } catch {
        // not JSON: keep the status
      }
      throw new APIError(resp.status, code, msg);
    }
    return resp;
  }

  async function getJSON(path) {
    return (await api('GET', path)).json();
  }

  async function postJSON(path, body) {
    return (await api('POST', path, body)).json();
  }

  const seg = encodeURIComponent;

  // --- session ---------------------------------------------------------

  function signedOut(msg) {
    state.csrf = '';
    state.principal = '';
    sessionStorage.removeItem(CSRF_KEY);
    sessionStorage.removeItem(NAME_KEY);
    stopTimer();
    show('signin');
    const e = $('signin-error');
    e.textContent = msg || '';
    e.hidden = !msg;
  }

  async function signIn(ev) {
    ev.preventDefault();
    const input = $('signin-key');
    const key = input.value.trim();
    input.value = '';
    const err = $('signin-error');
    err.hidden = true;
    let resp;
    try {
      resp = await fetch('/ui/session', {
        method: 'POST', credentials: 'same-origin', cache: 'no-store', redirect: 'error',
        headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
        body: JSON.stringify({ key }),
      });
    } catch (e) {
      signedOut('The gateway did not answer: ' + e.message);
      return;
    }
    if (!resp.ok) {
      const why = {
        401: 'Sign-in failed: the key or token was not accepted.',
        403: 'This credential may not use the console: it holds no admin permission.',
        413: 'That key is too long.',
      }[resp.status] || 'Sign-in failed (HTTP ' + resp.status + ').';
      signedOut(why);
      return;
    }
    const j = await resp.json();
    state.csrf = String(j.csrf || '');
    state.principal = String(j.principal || '');
    sessionStorage.setItem(CSRF_KEY, state.csrf);
    sessionStorage.setItem(NAME_KEY, state.principal);
    route();
  }

  async function signOut() {
    try {
      await fetch('/ui/session', {
        method: 'DELETE', credentials: 'same-origin', cache: 'no-store', redirect: 'error',
        headers: { 'X-CSRF-Token': state.csrf },
      });
    } catch {
      // the cookie is HttpOnly; forgetting the token ends the session here anyway
    }
    signedOut('Signed out.');
  }

  // --- routing ---------------------------------------------------------

  function stopTimer() {
    clearInterval(state.timer);
    state.timer = 0;
  }

  function show(name) {
    state.page = name;
    $('flash').hidden = true;
    for (const s of document.querySelectorAll('section.page')) s.hidden = s.id !== 'page-' + name;
    const signedIn = name !== 'signin';
    $('nav').hidden = !signedIn;
    $('signout').hidden = !signedIn;
    $('whoami').hidden = !signedIn;
    $('whoami').textContent = signedIn ? 'Signed in as ' + state.principal : '';
    for (const p of PAGES) {
      const a = $('nav-' + p);
      if (p === name) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    const page = $('page-' + name);
    if (page) page.dataset.state = 'loading';
    if (name === 'signin') {
      $('signin-insecure').hidden = window.isSecureContext;
      $('signin-key').focus();
    }
  }

  function ready(name) {
    const page = $('page-' + name);
    if (page && state.page === name) page.dataset.state = 'ready';
  }

  const loaders = {
    approvals: loadApprovals,
    audit: loadAudit,
    violations: loadViolations,
    users: loadUsers,
    plugins: loadPlugins,
  };

  function route() {
    stopTimer();
    if (!state.csrf) {
      show('signin');
      return;
    }
    const m = /^#\/([a-z]+)$/.exec(location.hash);
    const name = m && PAGES.includes(m[1]) ? m[1] : '';
    if (!name) {
      location.replace('#/approvals'); // fires hashchange
      return;
    }
    show(name);
    loaders[name]().catch(showError);
  }

  // --- approvals -------------------------------------------------------

  async function loadApprovals() {
    clear($('approvals-rows'));
    await refreshApprovals();
    if (state.page === 'approvals') {
      state.timer = setInterval(() => { refreshApprovals().catch(showError); }, 3000);
    }
  }

  async function refreshApprovals() {
    let pending;
    let recent;
    try {
      [pending, recent] = await Promise.all([
        getJSON('/admin/v1/approvals?state=pending'),
        getJSON('/admin/v1/approvals?limit=20'),
      ]);
    } catch (e) {
      if (e.status === 401) throw e;
      const box = $('approvals-error');
      box.replaceChildren(sectionError(e));
      box.hidden = false;
      ready('approvals');
      return;
    }
    if (state.page !== 'approvals') return;
    $('approvals-error').hidden = true;
    // Rows are kept across refreshes (a comment being typed survives);
    // only rows that left the pending state go, new ones come on top.
    const tbody = $('approvals-rows');
    const want = new Set(pending.approvals.map((a) => a.id));
    for (const tr of [...tbody.children]) if (!want.has(tr.dataset.id)) tr.remove();
    const have = new Set([...tbody.children].map((tr) => tr.dataset.id));
    for (const a of [...pending.approvals].reverse()) if (!have.has(a.id)) tbody.prepend(approvalRow(a));
    const none = tbody.children.length === 0;
    $('approvals-empty').hidden = !none;
    $('approvals-table').hidden = none;
    const decided = recent.approvals.filter((a) => a.state !== 'pending');
    clear($('approvals-recent')).append(table([
      ['Request', (a) => el('span', { class: 'mono' }, a.id)],
      ['State', (a) => el('span', { class: 'badge state-' + a.state }, a.state)],
      ['Principal', (a) => a.principal],
      ['Tool', (a) => el('span', { class: 'mono' }, a.tool)],
      ['Decided by', (a) => a.decided_by || ''],
      ['Comment', (a) => a.comment || ''],
      ['Decided', (a) => when(a.decided_at)],
    ], decided, 'No decided requests yet.'));
    ready('approvals');
  }

  function approvalRow(a) {
    const comment = el('input', {
      type: 'text', class: 'comment', maxLength: 1024, placeholder: 'comment (optional)',
      'aria-label': 'Comment on ' + a.id,
    });
    const approve = el('button', { type: 'button', class: 'approve' }, 'Approve');
    const deny = el('button', { type: 'button', class: 'deny danger' }, 'Deny');
    const tr = el('tr', { data: { id: a.id } },
      el('td', { class: 'mono' }, a.id),
      el('td', null, a.principal),
      el('td', { class: 'mono' }, a.tool),
      el('td', null, el('pre', { class: 'args' }, pretty(a.args))),
      el('td', null, a.justification || ''),
      el('td', null, when(a.created_at)),
      el('td', null, when(a.expires_at)),
      el('td', { class: 'actions' }, comment, approve, deny));
    const decide = async (ok) => {
      approve.disabled = deny.disabled = true;
      try {
        const r = await postJSON('/admin/v1/approvals/' + seg(a.id) + (ok ? '/approve' : '/deny'), { comment: comment.value });
        flash(r.id + ': ' + r.state + ' (' + r.tool + ' by ' + r.principal + ')');
        tr.remove();
        await refreshApprovals();
      } catch (e) {
        approve.disabled = deny.disabled = false;
        showError(e);
      }
    };
    approve.addEventListener('click', () => decide(true));
    deny.addEventListener('click', () => decide(false));
    return tr;
  }

  // --- audit -----------------------------------------------------------

  function auditParams(forExport) {
    const p = new URLSearchParams();
    for (const f of ['type', 'user', 'tool', 'since']) {
      const v = $('audit-' + f).value.trim();
      if (v) p.set(f, v);
    }
    if (!forExport) p.set('limit', $('audit-limit').value.trim() || '100');
    return p;
  }

  async function loadAudit() {
    await searchAudit();
  }

  async function searchAudit() {
    const box = $('audit-error');
    let j;
    try {
      j = await getJSON('/admin/v1/audit?' + auditParams(false));
    } catch (e) {
      if (e.status === 401) throw e;
      box.replaceChildren(sectionError(e));
      box.hidden = false;
      ready('audit');
      return;
    }
    box.hidden = true;
    $('audit-detail').hidden = true;
    clear($('audit-results')).append(table([
      ['Seq', (e) => String(e.seq)],
      ['Time', (e) => when(e.time)],
      ['Type', (e) => el('span', { class: 'mono' }, e.type)],
      ['Principal', (e) => e.principal || ''],
      ['Tool', (e) => e.tool ? el('span', { class: 'mono' }, e.tool) : ''],
      ['Status', (e) => e.status || ''],
      ['Decision', (e) => e.decision || ''],
      ['Detail', (e) => el('span', { class: 'clip' }, e.detail || e.error || '')],
    ], j.events, 'No matching events.', (e) => ({
      class: 'clickable', tabIndex: 0, data: { seq: String(e.seq), type: e.type },
      on: {
        click: () => showEvent(e),
        keydown: (ev) => { if (ev.key === 'Enter') showEvent(e); },
      },
    })));
    ready('audit');
  }

  function showEvent(e) {
    $('audit-detail-title').textContent = 'Event ' + e.seq;
    const dl = clear($('audit-detail-fields'));
    for (const [k, v] of Object.entries(e)) {
      const text = typeof v === 'object' ? pretty(v) : String(v);
      dl.append(el('dt', null, k), el('dd', null, typeof v === 'object' ? el('pre', null, text) : text));
    }
    $('audit-detail').hidden = false;
  }

  async function exportAudit(format) {
    const p = auditParams(true);
    p.set('format', format);
    try {
      const resp = await api('GET', '/admin/v1/audit/export?' + p);
      const blob = await resp.blob();
      const url = URL.createObjectURL(blob);
      const a = el('a', { href: url, download: 'portcullis-audit.' + format, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      flash('Exported ' + blob.size + ' bytes as ' + format.toUpperCase() + '.');
    } catch (e) {
      showError(e);
    }
  }

  // --- violations and quarantine ---------------------------------------

  async function loadViolations() {
    const [q, v] = await Promise.allSettled([
      getJSON('/admin/v1/quarantines'),
      getJSON('/admin/v1/violations?limit=200'),
    ]);
    if (state.page !== 'violations') return;
    const qbox = clear($('quarantines'));
    if (q.status === 'rejected') {
      qbox.append(sectionError(q.reason));
    } else {
      qbox.append(table([
        ['ID', (x) => el('span', { class: 'mono' }, x.id)],
        ['Kind', (x) => x.kind],
        ['Subject', (x) => el('span', { class: 'mono' }, x.subject)],
        ['Reason', (x) => x.reason],
        ['Since', (x) => when(x.created_at)],
        ['By', (x) => x.created_by],
        ['Release', releaseForm],
      ], q.value.quarantines, 'No active quarantines.', (x) => ({ data: { id: x.id } })));
    }
    const vbox = clear($('violations'));
    if (v.status === 'rejected') {
      vbox.append(sectionError(v.reason));
    } else {
      vbox.append(table([
        ['Time', (x) => when(x.time)],
        ['Type', (x) => x.type],
        ['Severity', (x) => el('span', { class: 'badge sev-' + x.severity }, x.severity)],
        ['Principal', (x) => x.principal || ''],
        ['Plugin', (x) => x.plugin || ''],
        ['Tool', (x) => x.tool || ''],
        ['Detail', (x) => el('span', { class: 'clip' }, x.detail || '')],
      ], v.value.violations, 'No violations recorded.'));
    }
    ready('violations');
  }

  function releaseForm(x) {
    const why = el('input', {
      type: 'text', class: 'reason', maxLength: 1024, placeholder: 'reason (required)',
      'aria-label': 'Reason to release ' + x.id,
    });
    const btn = el('button', { type: 'button', class: 'release' }, 'Release');
    btn.addEventListener('click', async () => {
      if (!why.value.trim()) {
        flash('A reason is required to release a quarantine.', true);
        why.focus();
        return;
      }
      btn.disabled = true;
      try {
        const r = await postJSON('/admin/v1/quarantines/release', { target: x.id, reason: why.value });
        flash('Released ' + r.subject + '.');
        await loadViolations();
      } catch (e) {
        btn.disabled = false;
        showError(e);
      }
    });
    return el('span', { class: 'actions' }, why, btn);
  }

  // --- users, roles and keys -------------------------------------------

  // confirmButton acts on the second click within 5 s (no blocking
  // dialogs): for changes that lock someone out.
  function confirmButton(label, confirmLabel, cls, action) {
    const b = el('button', { type: 'button', class: cls }, label);
    let armed = 0;
    b.addEventListener('click', async () => {
      if (!armed) {
        b.textContent = confirmLabel;
        armed = setTimeout(() => { armed = 0; b.textContent = label; }, 5000);
        return;
      }
      clearTimeout(armed);
      armed = 0;
      b.disabled = true;
      try {
        await action();
      } catch (e) {
        b.disabled = false;
        b.textContent = label;
        showError(e);
      }
    });
    return b;
  }

  async function loadUsers() {
    const [u, r, k] = await Promise.allSettled([
      getJSON('/admin/v1/users'),
      getJSON('/admin/v1/roles'),
      getJSON('/admin/v1/keys'),
    ]);
    if (state.page !== 'users') return;
    const ubox = clear($('users'));
    if (u.status === 'rejected') {
      ubox.append(sectionError(u.reason));
    } else {
      ubox.append(table([
        ['Name', (x) => x.name],
        ['Roles', (x) => list(x.roles)],
        ['State', (x) => el('span', { class: 'badge ' + (x.disabled ? 'state-denied' : 'state-approved') },
          x.disabled ? 'disabled' : 'enabled')],
        ['Created', (x) => when(x.created_at)],
        ['', (x) => x.disabled
          ? el('button', { type: 'button', class: 'enable', on: { click: () => setUser(x.name, 'enable') } }, 'Enable')
          : confirmButton('Disable', 'Confirm disable', 'disable danger', () => setUser(x.name, 'disable'))],
      ], u.value.users, 'No users.', (x) => ({ data: { name: x.name } })));
    }
    const rbox = clear($('roles'));
    if (r.status === 'rejected') {
      rbox.append(sectionError(r.reason));
    } else {
      rbox.append(table([
        ['Name', (x) => x.name],
        ['Description', (x) => x.description || ''],
        ['Permissions', (x) => el('ul', { class: 'plain' },
          (x.permissions || []).map((p) => el('li', { class: 'mono' }, p.effect + ' ' + p.action + ' ' + p.pattern)))],
      ], r.value.roles, 'No roles.'));
    }
    const kbox = clear($('keys'));
    if (k.status === 'rejected') {
      kbox.append(sectionError(k.reason));
    } else {
      const now = Date.now();
      const keyState = (x) => {
        if (x.revoked_at) return 'revoked';
        if (x.expires_at && new Date(x.expires_at).getTime() <= now) return 'expired';
        return 'active';
      };
      kbox.append(table([
        ['ID', (x) => el('span', { class: 'mono' }, x.id)],
        ['User', (x) => x.user],
        ['Roles', (x) => list(x.roles)],
        ['Scopes', (x) => list(x.scopes)],
        ['Prefix', (x) => el('span', { class: 'mono' }, x.prefix)],
        ['Created', (x) => when(x.created_at)],
        ['Expires', (x) => when(x.expires_at)],
        ['Last used', (x) => when(x.last_used_at)],
        ['State', (x) => el('span', { class: 'badge state-' + keyState(x) }, keyState(x))],
        ['', (x) => keyState(x) === 'active'
          ? confirmButton('Revoke', 'Confirm revoke', 'revoke danger', () => revokeKey(x.id)) : ''],
      ], k.value.keys, 'No API keys.', (x) => ({ data: { id: x.id } })));
    }
    ready('users');
  }

  async function setUser(name, action) {
    await postJSON('/admin/v1/users/' + seg(name) + '/' + action);
    flash('User ' + name + ' ' + action + 'd.');
    await loadUsers();
  }

  async function revokeKey(id) {
    await (await api('DELETE', '/admin/v1/keys/' + seg(id))).json();
    flash('Key ' + id + ' revoked.');
    await loadUsers();
  }

  // --- plugins ---------------------------------------------------------

  async function loadPlugins() {
    const box = clear($('plugins'));
    $('plugin-detail').hidden = true;
    let j;
    try {
      j = await getJSON('/admin/v1/plugins');
    } catch (e) {
      if (e.status === 401) throw e;
      box.append(e.status === 501
        ? el('p', { class: 'empty', id: 'plugins-empty' },
          'No upstream MCP servers are configured (servers: in the configuration).')
        : sectionError(e));
      ready('plugins');
      return;
    }
    if (state.page !== 'plugins') return;
    if (j.servers.length === 0 && j.tools.length === 0) {
      box.append(el('p', { class: 'empty', id: 'plugins-empty' }, 'No upstream MCP servers and no pinned tools.'));
      ready('plugins');
      return;
    }
    box.append(el('h2', null, 'Servers'), table([
      ['Name', (s) => s.name],
      ['Kind', (s) => s.kind],
      ['Level', (s) => s.security_level],
      ['State', (s) => el('span', { class: 'badge state-' + s.state }, s.state)],
      ['Since', (s) => when(s.since)],
      ['Restarts', (s) => String(s.restarts)],
      ['Tools', (s) => String((s.tools || []).length)],
      ['Withheld', (s) => list(s.withheld)],
      ['Last error', (s) => el('span', { class: 'clip' }, s.last_error || '')],
    ], j.servers, 'No servers.'));
    box.append(el('h2', null, 'Pinned tool definitions'), table([
      ['Server', (t) => t.server],
      ['Tool', (t) => el('span', { class: 'mono' }, t.tool)],
      ['Status', (t) => el('span', { class: 'badge state-' + t.status }, t.status)],
      ['Accepted hash', (t) => el('span', { class: 'mono' }, (t.hash || '').slice(0, 19))],
      ['Findings', (t) => String((t.pending_findings || []).length || '')],
      ['Updated', (t) => when(t.updated_at)],
      ['Accepted by', (t) => t.accepted_by || ''],
      ['', (t) => el('button', { type: 'button', class: 'inspect secondary', on: { click: () => inspect(t.server, t.tool) } }, 'Inspect')],
    ], j.tools, 'No pinned tools.', (t) => ({ data: { server: t.server, tool: t.tool } })));
    ready('plugins');
  }

  async function inspect(server, tool) {
    let t;
    try {
      t = await getJSON('/admin/v1/plugins/' + seg(server) + '/tools/' + seg(tool));
    } catch (e) {
      showError(e);
      return;
    }
    const box = clear($('plugin-detail'));
    box.append(el('h2', null, server + '/' + tool + ' — ' + t.status));
    const field = (label, v) => el('div', { class: 'field' }, el('h3', null, label), el('pre', null, v));
    if (t.pending_hash) {
      box.append(el('p', null, 'Pending definition ', el('span', { class: 'mono' }, t.pending_hash),
        ' awaits acceptance; the tool is withheld until then.'));
      if ((t.pending_findings || []).length > 0) {
        box.append(el('h3', null, 'Scan findings'), table([
          ['Rule', (f) => el('span', { class: 'mono' }, f.rule)],
          ['Field', (f) => el('span', { class: 'mono' }, f.field)],
          ['Excerpt', (f) => el('pre', null, f.excerpt)],
        ], t.pending_findings, ''));
      }
      if (t.diff) box.append(field('Diff (accepted → pending)', t.diff));
      box.append(field('Pending definition', pretty(t.pending_definition)));
      const accept = confirmButton('Accept this definition', 'Confirm accept', 'accept danger', async () => {
        const r = await postJSON('/admin/v1/plugins/' + seg(server) + '/tools/' + seg(tool) + '/accept', { hash: t.pending_hash });
        flash(server + '/' + tool + ' accepted (' + r.hash + ').');
        await loadPlugins();
      });
      box.append(el('p', null, accept));
    }
    if (t.definition) {
      box.append(field('Accepted definition' + (t.accepted_by ? ' (by ' + t.accepted_by + ')' : ''), pretty(t.definition)));
    }
    box.hidden = false;
  }

  // --- wiring ----------------------------------------------------------

  document.addEventListener('DOMContentLoaded', () => {
    $('signin-form').addEventListener('submit', signIn);
    $('signout').addEventListener('click', signOut);
    $('audit-filters').addEventListener('submit', (ev) => {
      ev.preventDefault();
      searchAudit().catch(showError);
    });
    $('audit-export-jsonl').addEventListener('click', () => exportAudit('jsonl'));
    $('audit-export-csv').addEventListener('click', () => exportAudit('csv'));
    window.addEventListener('hashchange', route);
    route();
  });
})();
