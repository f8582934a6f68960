// Pipevisor dashboard: plain JS, no dependencies. Every page reads JSON
// from /api/ and re-renders every poll interval. Text goes in through
// textContent only, never as HTML.
'use strict';

(function () {
  const S = { csrf: '', poll: 2000, page: 'overview', timer: 0, chartPipeline: '', openJob: null, seq: 0, notice: '', confirm: null };
  const SVG = 'http://www.w3.org/2000/svg';

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of kids.flat()) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  function svg(tag, attrs, ...kids) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    for (const c of kids) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }

  async function api(path, opts) {
    const r = await fetch(path, Object.assign({ credentials: 'same-origin', headers: { Accept: 'application/json' } }, opts || {}));
    let body = {};
    try { body = await r.json(); } catch (_) { body = { error: r.status + ' ' + r.statusText }; }
    if (!r.ok) throw new Error(body.error || (r.status + ' ' + r.statusText));
    return body;
  }
  function post(path) {
    return api(path, { method: 'POST', headers: { Accept: 'application/json', 'X-CSRF-Token': S.csrf } });
  }

  const count = (n) => (n < 0 ? '–' : String(n));
  const rate = (n) => (n >= 100 ? n.toFixed(0) : n.toFixed(2));
  function dur(ms, samples) {
    if (samples === 0) return '–';
    if (ms >= 1000) return (ms / 1000).toFixed(ms >= 10000 ? 0 : 1) + ' s';
    if (ms >= 10) return ms.toFixed(0) + ' ms';
    return ms.toFixed(2) + ' ms';
  }
  function bytes(n) {
    if (!n) return '–';
    const mib = n / (1 << 20);
    return (mib >= 100 ? mib.toFixed(0) : mib.toFixed(1)) + ' MiB';
  }
  function ago(t) {
    const s = Math.max(0, (Date.now() - new Date(t).getTime()) / 1000);
    if (s < 60) return s.toFixed(0) + ' s';
    if (s < 3600) return (s / 60).toFixed(0) + ' min';
    return (s / 3600).toFixed(1) + ' h';
  }
  const badge = (s) => el('span', { class: 'badge ' + s }, s);
  const num = (field, v, text) => el('td', { class: 'num', 'data-field': field, 'data-value': v }, text);

  function showError(msg) {
    const e = document.getElementById('error');
    e.textContent = msg || '';
    e.hidden = !msg;
  }
  function live(ok) {
    const l = document.getElementById('live');
    l.className = 'live' + (ok ? ' ok' : '');
    l.textContent = ok ? 'live · ' + new Date().toLocaleTimeString() : 'disconnected';
  }

  // ---- overview ----
  async function overview() {
    const d = await api('/api/overview');
    const rows = d.pipelines.map((p) => el('tr', { 'data-pipeline': p.name },
      el('td', { 'data-field': 'name' }, el('b', null, p.name)),
      el('td', { 'data-field': 'driver' }, p.driver),
      el('td', { 'data-field': 'state', 'data-value': p.state, title: p.error || '' }, badge(p.state)),
      num('ready', p.ready, count(p.ready)),
      num('running', p.running, count(p.running)),
      num('delayed', p.delayed, count(p.delayed)),
      num('dead', p.dead, count(p.dead)),
      num('per_second', p.per_second, d.history ? rate(p.per_second) : '–'),
      num('p50', p.p50_ms, dur(p.p50_ms, p.samples)),
      num('p99', p.p99_ms, dur(p.p99_ms, p.samples)),
      el('td', null, p.state === 'consuming'
        ? el('button', { 'data-action': 'pause', 'data-pipeline': p.name, onclick: act }, 'Pause')
        : el('button', { 'data-action': 'resume', 'data-pipeline': p.name, onclick: act }, 'Resume'))));
    const sum = (k) => d.pipelines.reduce((a, p) => a + Math.max(0, p[k]), 0);
    return [
      el('div', { class: 'totals' },
        el('div', null, el('b', { id: 'total-rate' }, rate(d.total.per_second)), 'jobs/s (last minute)'),
        el('div', null, el('b', null, dur(d.total.p50_ms, d.total.samples) + ' / ' + dur(d.total.p99_ms, d.total.samples)), 'p50 / p99 run time'),
        el('div', null, el('b', null, String(sum('ready'))), 'ready'),
        el('div', null, el('b', null, String(sum('running'))), 'running')),
      el('div', { class: 'card' },
        el('table', { id: 'pipelines' },
          el('thead', null, el('tr', null, el('th', null, 'Pipeline'), el('th', null, 'Driver'), el('th', null, 'State'),
            el('th', { class: 'num' }, 'Ready'), el('th', { class: 'num' }, 'Running'), el('th', { class: 'num' }, 'Delayed'),
            el('th', { class: 'num' }, 'Dead'), el('th', { class: 'num' }, 'Jobs/s'), el('th', { class: 'num' }, 'p50'),
            el('th', { class: 'num' }, 'p99'), el('th', null, ''))),
          el('tbody', null, rows.length ? rows : el('tr', null, el('td', { colspan: 11, class: 'muted' }, 'No pipelines.'))))),
    ];
  }
  async function act(ev) {
    const b = ev.currentTarget;
    b.disabled = true;
    try {
      await post('/api/pipelines/' + encodeURIComponent(b.dataset.pipeline) + '/' + b.dataset.action);
      showError('');
    } catch (e) {
      showError(b.dataset.action + ' ' + b.dataset.pipeline + ': ' + e.message);
    }
    refresh();
  }

  // ---- chart ----
  async function chart() {
    const [ov, h] = await Promise.all([api('/api/overview'),
      api('/api/history' + (S.chartPipeline ? '?pipeline=' + encodeURIComponent(S.chartPipeline) : ''))]);
    const pick = el('select', { id: 'chart-pipeline', onchange: (e) => { S.chartPipeline = e.target.value; refresh(); } },
      el('option', { value: '' }, 'All pipelines'),
      ov.pipelines.map((p) => el('option', { value: p.name, selected: p.name === S.chartPipeline }, p.name)));
    return [
      el('h2', null, 'Throughput and wait time, last hour'),
      el('div', { class: 'card' }, pick, draw(h.points, h.bucket_seconds),
        el('div', { class: 'legend' }, el('span', { class: 'jobs' }, 'jobs/s'),
          el('span', { class: 'wait' }, 'mean wait (receive to settle, minus the run) in ms'))),
    ];
  }
  function draw(points, bucket) {
    const W = 960, H = 280, L = 50, R = 60, T = 12, B = 26, w = W - L - R, h = H - T - B;
    const maxR = Math.max(1, ...points.map((p) => p.per_second));
    const maxW = Math.max(1, ...points.map((p) => p.wait_ms));
    const x = (i) => L + (points.length <= 1 ? 0 : (i * w) / (points.length - 1));
    const g = svg('svg', { id: 'chart', viewBox: `0 0 ${W} ${H}`, width: '100%', role: 'img', 'aria-label': 'jobs per second and wait time' });
    for (let k = 0; k <= 4; k++) {
      const y = T + h - (k * h) / 4;
      g.append(svg('line', { x1: L, x2: L + w, y1: y, y2: y, stroke: '#e3e6ec' }));
      g.append(svg('text', { x: L - 6, y: y + 4, 'text-anchor': 'end' }, rate((maxR * k) / 4)));
      g.append(svg('text', { x: L + w + 6, y: y + 4 }, ((maxW * k) / 4).toFixed(maxW >= 40 ? 0 : 2)));
    }
    for (let m = 0; m <= 60; m += 10) {
      const i = points.length - 1 - (m * 60) / bucket;
      if (i < 0) continue;
      g.append(svg('text', { x: x(i), y: H - 6, 'text-anchor': 'middle' }, m === 0 ? 'now' : '-' + m + ' min'));
    }
    const line = (f, max, color, id) => g.append(svg('polyline', {
      id, fill: 'none', stroke: color, 'stroke-width': 1.6, 'stroke-linejoin': 'round',
      points: points.map((p, i) => x(i).toFixed(1) + ',' + (T + h - (f(p) * h) / max).toFixed(1)).join(' '),
    }));
    line((p) => p.per_second, maxR, '#2f6fde', 'line-jobs');
    line((p) => p.wait_ms, maxW, '#dd6b20', 'line-wait');
    return g;
  }

  // ---- workers ----
  async function workers() {
    const d = await api('/api/workers');
    const rows = d.workers.map((w) => el('tr', { 'data-pid': w.pid },
      num('pid', w.pid, w.pid), el('td', null, badge(w.state)), num('jobs', w.jobs, w.jobs), num('rss', w.rss, bytes(w.rss)),
      el('td', { 'data-field': 'current_job' }, w.current_job || el('span', { class: 'muted' }, 'idle')),
      num('running', w.running_ms || 0, w.current_job ? dur(w.running_ms || 0, 1) : '–'),
      num('age', 0, ago(w.created))));
    return [el('h2', null, 'Workers'), el('div', { class: 'card' }, el('table', { id: 'workers' },
      el('thead', null, el('tr', null, el('th', { class: 'num' }, 'PID'), el('th', null, 'State'), el('th', { class: 'num' }, 'Jobs'),
        el('th', { class: 'num' }, 'RSS'), el('th', null, 'Current job'), el('th', { class: 'num' }, 'Running for'), el('th', { class: 'num' }, 'Age'))),
      el('tbody', null, rows.length ? rows : el('tr', null, el('td', { colspan: 7, class: 'muted' }, 'No workers.')))))];
  }

  // ---- failed jobs ----
  // Retry or remove the jobs ids of pipeline p (all of them when ids is
  // null); the page says what was done or why not.
  async function failedDo(p, action, ids) {
    const body = ids ? { ids } : { all: true };
    try {
      const r = await api('/api/failed/' + encodeURIComponent(p) + '/' + action, {
        method: 'POST', body: JSON.stringify(body),
        headers: { Accept: 'application/json', 'Content-Type': 'application/json', 'X-CSRF-Token': S.csrf },
      });
      showError('');
      S.notice = (action === 'retry' ? 'Retried ' : 'Removed ') + r.ids.length + ' job' + (r.ids.length === 1 ? '' : 's') + ' of ' + p + '.';
      if (S.openJob && S.openJob.p === p && (!ids || ids.includes(S.openJob.id))) S.openJob = null;
    } catch (e) {
      S.notice = '';
      showError(action + ' in ' + p + ': ' + e.message);
    }
    S.confirm = null;
    refresh();
  }
  // A button that runs fn once; a destructive one (confirm set) asks for
  // a second click first.
  function actButton(label, attrs, fn, confirmKey) {
    const armed = confirmKey && S.confirm && S.confirm.key === confirmKey && S.confirm.until > Date.now();
    return el('button', Object.assign({ class: armed ? 'danger' : undefined }, attrs, {
      onclick: (ev) => {
        ev.stopPropagation();
        if (confirmKey && !armed) {
          S.confirm = { key: confirmKey, until: Date.now() + 5000 };
          refresh();
          return;
        }
        ev.currentTarget.disabled = true;
        fn();
      },
    }), armed ? 'Really ' + label.toLowerCase() + '?' : label);
  }
  async function failed() {
    const d = await api('/api/failed');
    const out = [el('h2', null, 'Failed jobs')];
    if (!d.available) {
      out.push(el('div', { class: 'card', id: 'failed-unavailable' }, d.reason));
      return out;
    }
    out.push(el('p', { class: 'muted', id: 'failed-note' },
      'Dead jobs of every pipeline, oldest first. Retry pushes a job back to its pipeline as attempt 1 ' +
      '(it leaves this list once the push is confirmed); Remove deletes it. Click a job to see it in full.'));
    if (S.notice) out.push(el('p', { class: 'notice', id: 'failed-notice' }, S.notice));
    for (const l of d.pipelines) {
      const head = el('h3', null, l.pipeline + ' ', el('span', { class: 'muted' }, '(' + l.driver + ')'));
      const card = el('div', { class: 'card', 'data-pipeline': l.pipeline }, head);
      if (!l.available) {
        card.append(el('p', { class: 'muted' }, l.reason));
      } else if (!l.jobs.length) {
        card.append(el('p', { class: 'muted', 'data-empty': '' }, 'No dead jobs.'));
      } else {
        head.append(el('span', { class: 'actions' },
          actButton('Retry all', { 'data-action': 'retry-all' }, () => failedDo(l.pipeline, 'retry', null), 'retry-all:' + l.pipeline),
          actButton('Remove all', { 'data-action': 'remove-all' }, () => failedDo(l.pipeline, 'remove', null), 'remove-all:' + l.pipeline)));
        if (l.more) card.append(el('p', { class: 'muted' }, 'The oldest ' + l.jobs.length + ' dead jobs; there are more.'));
        card.append(el('table', { class: 'dead' },
          el('thead', null, el('tr', null, el('th', null, 'ID'), el('th', null, 'Job'), el('th', { class: 'num' }, 'Attempts'),
            el('th', null, 'Died'), el('th', null, 'Reason'), el('th', null, 'Payload'), el('th', null, ''))),
          el('tbody', null, l.jobs.map((j) => el('tr', { class: 'clickable', 'data-job': j.id, onclick: () => { S.openJob = { p: l.pipeline, id: j.id }; refresh(); } },
            el('td', null, j.id), el('td', null, j.name), num('attempts', j.attempts, j.attempts),
            el('td', { title: j.at || '' }, j.at ? ago(j.at) + ' ago' : '–'),
            el('td', { class: 'reason', 'data-field': 'reason', title: j.reason }, j.reason),
            el('td', { class: 'muted preview' }, j.preview),
            el('td', { class: 'actions' },
              actButton('Retry', { 'data-action': 'retry', 'data-job': j.id }, () => failedDo(l.pipeline, 'retry', [j.id])),
              actButton('Remove', { 'data-action': 'remove', 'data-job': j.id }, () => failedDo(l.pipeline, 'remove', [j.id]))))))));
      }
      out.push(card);
    }
    if (S.openJob) {
      try {
        const o = S.openJob;
        const j = await api('/api/failed/' + encodeURIComponent(o.p) + '/' + encodeURIComponent(o.id));
        const payload = j.payload_base64 ? '(binary payload, base64) ' + j.payload_base64 : j.payload;
        out.push(el('div', { class: 'card', id: 'failed-job' }, el('h3', null, 'Job ' + j.id + ' in ' + j.pipeline + ' ',
          el('span', { class: 'actions' },
            actButton('Retry', { 'data-action': 'retry' }, () => failedDo(o.p, 'retry', [o.id])),
            actButton('Remove', { 'data-action': 'remove' }, () => failedDo(o.p, 'remove', [o.id])),
            el('button', { onclick: () => { S.openJob = null; refresh(); } }, 'Close'))),
        el('pre', null, JSON.stringify({ job: j.name, reason: j.reason, attempts: j.attempts, died_at: j.at || null, priority: j.priority, key: j.key, headers: j.headers || {} }, null, 2)),
        el('pre', { id: 'failed-payload' }, payload)));
      } catch (e) {
        S.openJob = null;
      }
    }
    return out;
  }

  // ---- config ----
  async function config() {
    const d = await api('/api/config');
    return [el('h2', null, 'Configuration in effect'), el('p', { class: 'muted' }, 'Secrets are masked.'), el('pre', { id: 'config-yaml' }, d.yaml)];
  }

  const pages = { overview, chart, workers, failed, config };

  async function refresh() {
    clearTimeout(S.timer);
    const seq = ++S.seq;
    const page = S.page;
    try {
      const nodes = await pages[page]();
      if (seq !== S.seq) return; // a newer refresh won
      document.getElementById('page').replaceChildren(...nodes);
      document.body.dataset.page = page;
      document.body.dataset.loaded = String(seq);
      live(true);
    } catch (e) {
      if (seq !== S.seq) return;
      showError(e.message);
      live(false);
    }
    if (page !== 'config') S.timer = setTimeout(refresh, S.poll);
  }

  function route() {
    S.page = pages[location.hash.slice(1)] ? location.hash.slice(1) : 'overview';
    for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.page === S.page);
    showError('');
    S.notice = '';
    refresh();
  }

  async function start() {
    try {
      const s = await api('/api/session');
      S.csrf = s.csrf;
      S.poll = s.poll_ms || S.poll;
    } catch (e) {
      showError(e.message);
    }
    window.addEventListener('hashchange', route);
    route();
  }
  start();
})();
