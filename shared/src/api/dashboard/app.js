// batchq dashboard: reads the API every few seconds and draws what it says.
// No data lives in the page; no library, no other host (the CSP forbids both).
'use strict';
(function () {
  // Every 3 s; `?refresh=SECONDS` (at least 1) changes it.
  const REFRESH_MS = Math.max(1, Number(new URLSearchParams(location.search).get('refresh')) || 3) * 1000;
  const LIVE_SAMPLES = 600;
  const JOBS_LIMIT = 50;
  const SAVINGS_DAYS = 30;
  const KEY_NAME = 'batchq.dashboard.key';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  // The API is where the page is: /dashboard, or /STAGE/dashboard behind API Gateway.
  const BASE = location.pathname.replace(/\/dashboard\/?$/, '');
  const COLOURS = ['#2b6cb0', '#c05621', '#2f855a', '#6b46c1', '#b83280', '#2c7a7b', '#975a16', '#4a5568'];

  const $ = (id) => document.getElementById(id);
  let timer = null;
  // Queue depth per model at each refresh since the page opened: [{at, queued: {model: n}}].
  const live = [];

  // ---------------------------------------------------------------- API
  function key() {
    try { return sessionStorage.getItem(KEY_NAME); } catch (e) { return null; }
  }

  async function call(path) {
    const headers = { Accept: 'application/json' };
    const k = key();
    if (k) headers.Authorization = 'Bearer ' + k;
    let resp;
    try {
      resp = await fetch(BASE + path, { headers: headers, cache: 'no-store', credentials: 'same-origin' });
    } catch (e) {
      return { status: 0, body: null, path: path, message: 'the API did not answer (' + e.message + ')' };
    }
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    const message = body && body.error ? body.error.code + ': ' + body.error.message : 'HTTP ' + resp.status;
    return { status: resp.status, body: body, path: path, message: message };
  }

  // ---------------------------------------------------------------- exact decimals
  // Amounts are decimal strings; sums are done on scaled integers, never floats.
  const SCALE = 12;
  function scaled(s) {
    if (s === null || s === undefined) return null;
    const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(String(s));
    if (!m) return null;
    const frac = (m[3] || '').padEnd(SCALE, '0').slice(0, SCALE);
    const v = BigInt(m[2] + frac);
    return m[1] ? -v : v;
  }
  function decimal(v) {
    const neg = v < 0n;
    const digits = (neg ? -v : v).toString().padStart(SCALE + 1, '0');
    const int = digits.slice(0, digits.length - SCALE);
    const frac = digits.slice(digits.length - SCALE).replace(/0+$/, '');
    return (neg ? '-' : '') + int + (frac ? '.' + frac : '');
  }
  // "0.001500" -> "0.0015", the form data-value attributes carry.
  function normal(s) { const v = scaled(s); return v === null ? '' : decimal(v); }
  function usd(s) {
    if (s === null || s === undefined) return 'unpriced';
    const n = Number(s);
    // Cents from a dollar up; three significant digits below (batch prices are small).
    if (n !== 0 && Math.abs(n) < 0.0001) return '$' + normal(s);
    if (n !== 0 && Math.abs(n) < 1) return '$' + Number(n.toPrecision(3)).toString();
    return '$' + n.toFixed(2);
  }
  function count(n) { return Number(n).toLocaleString('en-US'); }
  function age(secs) {
    if (secs === null || secs === undefined) return 'none queued';
    if (secs < 120) return secs + ' s';
    if (secs < 7200) return Math.round(secs / 60) + ' min';
    return (secs / 3600).toFixed(1) + ' h';
  }

  // ---------------------------------------------------------------- DOM helpers
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function figure(id, value, text) {
    const e = $(id);
    e.dataset.value = value === null || value === undefined ? '' : String(value);
    e.textContent = text;
  }
  // A panel's state: ok, empty, not-available (route missing), or error.
  function state(id, st, message, source) {
    const p = $(id);
    p.dataset.state = st;
    if (source !== undefined) p.dataset.source = source;
    const err = p.querySelector('[data-role=error]');
    if (err) err.textContent = message || '';
  }
  function unavailable(id, resp) {
    if (resp.status === 404) {
      state(id, 'not-available', 'not available: this server has no ' + resp.path.split('?')[0] + ' yet');
    } else {
      state(id, 'error', 'could not read ' + resp.path + ': ' + resp.message);
    }
  }

  // ---------------------------------------------------------------- charts
  const W = 600, PAD_L = 48, PAD_R = 10, PAD_T = 10, PAD_B = 28;
  function frame(chart, height, max, labels) {
    while (chart.firstChild) chart.removeChild(chart.firstChild);
    const plotH = height - PAD_T - PAD_B;
    const y = (v) => PAD_T + plotH - (max > 0 ? (v / max) * plotH : 0);
    for (const t of [0, 0.5, 1]) {
      const v = max * t;
      chart.appendChild(svg('line', { x1: PAD_L, x2: W - PAD_R, y1: y(v), y2: y(v), class: 'grid' }));
      chart.appendChild(svg('text', { x: PAD_L - 4, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, tick(v)));
    }
    const n = labels.length;
    const step = n > 0 ? (W - PAD_L - PAD_R) / n : 0;
    const every = Math.max(1, Math.ceil(n / 8));
    labels.forEach((l, i) => {
      if (i % every === 0) {
        chart.appendChild(svg('text', { x: PAD_L + step * (i + 0.5), y: height - 8, class: 'axis', 'text-anchor': 'middle' }, l));
      }
    });
    return { y: y, step: step, x: (i) => PAD_L + step * (i + 0.5) };
  }
  function tick(v) {
    if (v === 0) return '0';
    if (v >= 1000) return Math.round(v / 100) / 10 + 'k';
    if (v >= 10) return String(Math.round(v));
    return String(Math.round(v * 1000) / 1000);
  }
  function empty(chart, height, text) {
    while (chart.firstChild) chart.removeChild(chart.firstChild);
    chart.appendChild(svg('text', { x: W / 2, y: height / 2, class: 'empty', 'text-anchor': 'middle' }, text));
    chart.dataset.points = '0';
  }
  // Lines, one per series: {name: [values by label index]}.
  function lineChart(chart, height, labels, series) {
    const names = Object.keys(series);
    const max = Math.max(0, ...names.flatMap((n) => series[n]));
    const f = frame(chart, height, max, labels);
    let points = 0;
    names.forEach((name, si) => {
      const pts = series[name].map((v, i) => f.x(i) + ',' + f.y(v)).join(' ');
      const colour = COLOURS[si % COLOURS.length];
      chart.appendChild(svg('polyline', { points: pts, fill: 'none', stroke: colour, 'stroke-width': 2, 'data-series': name }));
      series[name].forEach((v, i) => {
        if (v > 0) {
          chart.appendChild(svg('circle', { cx: f.x(i), cy: f.y(v), r: 2.5, fill: colour }));
          points += 1;
        }
      });
    });
    chart.dataset.points = String(points);
  }
  // Grouped bars: series = [{name, cls, values}].
  function barChart(chart, height, labels, series, line) {
    const max = Math.max(0, ...series.flatMap((s) => s.values), ...(line ? line.values : []));
    const f = frame(chart, height, max, labels);
    const bw = Math.max(1, (f.step * 0.8) / series.length);
    let points = 0;
    series.forEach((s, si) => {
      s.values.forEach((v, i) => {
        if (v <= 0) return;
        const x = f.x(i) - (f.step * 0.8) / 2 + bw * si;
        chart.appendChild(svg('rect', { x: x, y: f.y(v), width: bw, height: f.y(0) - f.y(v), class: s.cls, 'data-series': s.name }));
        points += 1;
      });
    });
    if (line) {
      chart.appendChild(svg('polyline', { points: line.values.map((v, i) => f.x(i) + ',' + f.y(v)).join(' '), class: line.cls, fill: 'none' }));
      line.values.forEach((v, i) => chart.appendChild(svg('circle', { cx: f.x(i), cy: f.y(v), r: 3, class: line.cls })));
    }
    chart.dataset.points = String(points);
  }

  // ---------------------------------------------------------------- panels
  function renderStats(resp) {
    if (resp.status !== 200) { unavailable('stats', resp); renderBudget(null); return; }
    const s = resp.body;
    $('tenant').textContent = s.tenant;
    const by = s.requests.by_status;
    for (const st of ['queued', 'claimed', 'completed', 'failed', 'cancelled']) figure('stat-' + st, by[st] || 0, count(by[st] || 0));
    figure('stat-total', s.requests.total, count(s.requests.total));
    figure('stat-oldest-age', s.queue.oldest_queued_age_seconds, age(s.queue.oldest_queued_age_seconds));
    figure('stat-open-jobs', s.jobs.open, count(s.jobs.open));
    figure('stat-batch-cost', normal(s.savings.batch_cost_usd), usd(s.savings.batch_cost_usd));
    figure('stat-realtime-cost', normal(s.savings.realtime_cost_usd), usd(s.savings.realtime_cost_usd));
    figure('stat-saved', normal(s.savings.saved_usd), usd(s.savings.saved_usd));
    state('stats', 'ok', '', '/v1/stats');
    renderBudget(s);
  }

  function renderBudget(stats) {
    const periods = ['daily', 'monthly'];
    if (!stats || !Object.prototype.hasOwnProperty.call(stats, 'budget')) {
      for (const p of periods) budgetPeriod(p, undefined);
      state('budget', 'not-available', stats ? 'not available: this server reports no budgets' : '');
      return;
    }
    for (const p of periods) budgetPeriod(p, stats.budget ? stats.budget[p] : null);
    state('budget', 'ok', '', '/v1/stats');
  }

  function budgetPeriod(period, b) {
    const box = $('budget-' + period);
    const body = box.querySelector('.body');
    while (body.firstChild) body.removeChild(body.firstChild);
    for (const k of ['limit', 'spent', 'committed', 'fraction']) delete box.dataset[k];
    if (b === undefined) { box.dataset.state = 'not-available'; body.textContent = 'not available'; return; }
    if (b === null) { box.dataset.state = 'none'; body.textContent = 'no limit set'; return; }
    const fraction = Number(b.used_fraction);
    box.dataset.state = fraction >= 1 ? 'over' : fraction >= 0.8 ? 'warning' : 'ok';
    box.dataset.limit = normal(b.limit_usd);
    box.dataset.spent = normal(b.spent_usd);
    box.dataset.committed = normal(b.committed_usd);
    box.dataset.fraction = String(b.used_fraction);
    const bar = el('div', { class: 'bar' });
    const spentPart = Number(b.limit_usd) > 0 ? Math.min(100, (Number(b.spent_usd) / Number(b.limit_usd)) * 100) : 100;
    const usedPart = Math.min(100, fraction * 100);
    bar.appendChild(el('div', { class: 'committed' }));
    bar.appendChild(el('div', { class: 'spent' }));
    body.appendChild(bar);
    // Widths through the CSSOM (allowed by the CSP, unlike style attributes in markup).
    bar.children[0].style.width = usedPart + '%';
    bar.children[1].style.width = spentPart + '%';
    body.appendChild(el('p', {}, usd(b.spent_usd) + ' spent + ' + usd(b.committed_usd) + ' committed of ' +
      usd(b.limit_usd) + ' (' + (fraction * 100).toFixed(1) + '%)'));
  }

  function renderJobs(resp) {
    const rows = $('job-rows');
    if (resp.status !== 200) { unavailable('jobs', resp); return; }
    while (rows.firstChild) rows.removeChild(rows.firstChild);
    for (const j of resp.body.jobs) {
      const c = j.request_counts;
      const tr = el('tr', { 'data-job-id': j.id, 'data-status': j.status });
      const total = c ? c.total : null;
      const done = c ? c.completed + c.failed : null;
      if (c) {
        tr.dataset.completed = c.completed;
        tr.dataset.failed = c.failed;
        tr.dataset.total = c.total;
      }
      tr.appendChild(el('td', { class: 'id' }, j.id));
      tr.appendChild(el('td', { class: 'st st-' + j.status }, j.status));
      tr.appendChild(el('td', {}, j.provider || ''));
      tr.appendChild(el('td', {}, j.model || ''));
      const prog = el('td', { class: 'progress' });
      const bar = el('div', { class: 'bar' });
      bar.appendChild(el('div', { class: 'spent' }));
      prog.appendChild(bar);
      tr.appendChild(prog);
      if (c) {
        bar.children[0].style.width = (total > 0 ? (done / total) * 100 : 0) + '%';
        prog.appendChild(el('span', {}, total > 0 ? Math.round((done / total) * 100) + '%' : '–'));
      } else {
        prog.appendChild(el('span', {}, 'shared'));
      }
      tr.appendChild(el('td', { class: 'num' }, c ? count(c.completed) : '–'));
      tr.appendChild(el('td', { class: 'num' }, c ? count(c.failed) : '–'));
      tr.appendChild(el('td', { class: 'num' }, c ? count(c.total) : '–'));
      tr.appendChild(el('td', {}, (j.created_at || '').replace('T', ' ').slice(0, 19)));
      rows.appendChild(tr);
    }
    state('jobs', resp.body.jobs.length ? 'ok' : 'empty', resp.body.jobs.length ? '' : 'no jobs yet', '/v1/jobs?limit=' + JOBS_LIMIT);
  }

  function renderActivity(resp) {
    const ids = ['queue', 'hours', 'failures'];
    if (resp.status !== 200) {
      for (const id of ids) unavailable(id, resp);
      empty($('chart-queue-live'), 160, 'not available');
      empty($('chart-queue'), 160, 'not available');
      while ($('queue-legend').firstChild) $('queue-legend').removeChild($('queue-legend').firstChild);
      empty($('chart-hours'), 220, 'not available');
      empty($('chart-failures'), 160, 'not available');
      while ($('failure-rows').firstChild) $('failure-rows').removeChild($('failure-rows').firstChild);
      for (const k of ['enqueued', 'completed', 'failed', 'cancelled', 'retried']) figure('hours-' + k, null, '–');
      return;
    }
    const a = resp.body;
    const labels = a.hours.map((h) => h.hour.slice(11) + 'h');
    // Queue depth: one line per model that had anything queued, in the
    // range's hours or in the samples taken since the page opened. The
    // current hour's figure is the queue now.
    const nowQueued = a.hours.length ? a.hours[a.hours.length - 1].queued_by_model || {} : {};
    live.push({ at: new Date().toISOString().slice(11, 19), queued: nowQueued });
    if (live.length > LIVE_SAMPLES) live.shift();
    const models = new Set();
    for (const h of a.hours) for (const m of Object.keys(h.queued_by_model || {})) models.add(m);
    for (const s of live) for (const m of Object.keys(s.queued)) models.add(m);
    const sorted = [...models].sort();
    const legend = $('queue-legend');
    while (legend.firstChild) legend.removeChild(legend.firstChild);
    sorted.forEach((m, i) => {
      const li = el('li', { 'data-model': m, 'data-queued-now': nowQueued[m] || 0 }, m + ': ' + count(nowQueued[m] || 0) + ' queued now');
      li.style.color = COLOURS[i % COLOURS.length];
      legend.appendChild(li);
    });
    const seriesOf = (rows, pick) => {
      const series = {};
      for (const m of sorted) series[m] = rows.map((r) => pick(r)[m] || 0);
      return series;
    };
    if (sorted.length && live.some((s) => Object.keys(s.queued).length)) {
      lineChart($('chart-queue-live'), 160, live.map((s) => s.at), seriesOf(live, (s) => s.queued));
    } else {
      empty($('chart-queue-live'), 160, 'nothing queued since this page opened');
    }
    if (sorted.length && a.hours.some((h) => Object.keys(h.queued_by_model || {}).length)) {
      lineChart($('chart-queue'), 160, labels, seriesOf(a.hours, (h) => h.queued_by_model || {}));
    } else {
      empty($('chart-queue'), 160, 'nothing queued at the end of the last ' + a.hours.length + ' hours');
    }
    state('queue', sorted.length ? 'ok' : 'empty', '', '/v1/activity');
    // Requests per hour.
    const busy = a.hours.some((h) => h.enqueued || h.completed || h.failed);
    if (busy) {
      barChart($('chart-hours'), 220, labels, [
        { name: 'enqueued', cls: 's-enqueued', values: a.hours.map((h) => h.enqueued) },
        { name: 'completed', cls: 's-completed', values: a.hours.map((h) => h.completed) },
        { name: 'failed', cls: 's-failed', values: a.hours.map((h) => h.failed) },
      ]);
    } else {
      empty($('chart-hours'), 220, 'no requests in the last ' + a.hours.length + ' hours');
    }
    for (const k of ['enqueued', 'completed', 'failed', 'cancelled', 'retried']) figure('hours-' + k, a.total[k], count(a.total[k]));
    state('hours', busy ? 'ok' : 'empty', '', '/v1/activity');
    // Failures by reason.
    const rows = $('failure-rows');
    while (rows.firstChild) rows.removeChild(rows.firstChild);
    for (const f of a.failures) {
      const tr = el('tr', { 'data-code': f.code, 'data-count': f.count });
      tr.appendChild(el('td', {}, f.code));
      tr.appendChild(el('td', { class: 'num' }, count(f.count)));
      rows.appendChild(tr);
    }
    if (a.failures.length) {
      barChart($('chart-failures'), 160, a.failures.map((f) => f.code), [{ name: 'failed', cls: 's-failed', values: a.failures.map((f) => f.count) }]);
    } else {
      empty($('chart-failures'), 160, 'no failures in the last ' + a.hours.length + ' hours');
    }
    state('failures', a.failures.length ? 'ok' : 'empty', '', '/v1/activity');
  }

  function renderSavings(resp, source) {
    const rows = $('savings-rows');
    if (resp.status !== 200) { unavailable('savings', resp); empty($('chart-savings'), 220, 'not available'); return; }
    while (rows.firstChild) rows.removeChild(rows.firstChild);
    const groups = resp.body.groups;
    let running = 0n;
    const saved = [], totals = [];
    for (const g of groups) {
      running += scaled(g.saved_usd) || 0n;
      saved.push(Number(g.saved_usd));
      totals.push(Number(decimal(running)));
      const tr = el('tr', { 'data-day': g.day, 'data-saved': normal(g.saved_usd), 'data-running': decimal(running), 'data-requests': g.requests });
      tr.appendChild(el('td', {}, g.day));
      tr.appendChild(el('td', { class: 'num' }, count(g.requests)));
      tr.appendChild(el('td', { class: 'num' }, usd(g.batch_cost_usd)));
      tr.appendChild(el('td', { class: 'num' }, usd(g.saved_usd)));
      tr.appendChild(el('td', { class: 'num' }, usd(decimal(running))));
      rows.appendChild(tr);
    }
    $('savings').dataset.total = decimal(running);
    if (groups.length) {
      barChart($('chart-savings'), 220, groups.map((g) => g.day.slice(5)), [{ name: 'saved', cls: 's-saved', values: saved }],
        { cls: 's-running', values: totals });
    } else {
      empty($('chart-savings'), 220, 'no completed requests in the last ' + SAVINGS_DAYS + ' days');
    }
    state('savings', groups.length ? 'ok' : 'empty', '', source);
  }

  // ---------------------------------------------------------------- refresh
  function savingsSource() {
    const from = new Date(Date.now() - (SAVINGS_DAYS - 1) * 86400000).toISOString().slice(0, 10);
    return '/v1/savings?group_by=day&from=' + from;
  }

  async function refresh() {
    clearTimeout(timer);
    const savings = savingsSource();
    const [stats, jobs, activity, days] = await Promise.all([
      call('/v1/stats'), call('/v1/jobs?limit=' + JOBS_LIMIT), call('/v1/activity'), call(savings),
    ]);
    const refused = [stats, jobs, activity, days].find((r) => r.status === 401 || r.status === 403);
    if (refused) {
      let why = '';
      if (key()) why = 'that key was refused (' + refused.message + ')';
      else if (refused.status === 403) why = 'the API refused an unsigned call (' + refused.message + '); a browser cannot sign IAM (SigV4) calls, but it can send a JWT the API accepts';
      askForKey(why);
      return;
    }
    $('auth').hidden = true;
    $('forget-key').hidden = !key();
    renderStats(stats);
    renderJobs(jobs);
    renderActivity(activity);
    renderSavings(days, savings);
    const failed = [stats, jobs, activity, days].filter((r) => r.status !== 200 && r.status !== 404);
    $('status').textContent = failed.length ? 'some figures could not be read; retrying' : '';
    const now = new Date();
    $('updated').textContent = now.toISOString().slice(11, 19) + ' UTC';
    $('updated').setAttribute('datetime', now.toISOString());
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes) + 1);
    timer = setTimeout(refresh, REFRESH_MS);
  }

  function askForKey(message) {
    clearTimeout(timer);
    $('auth').hidden = false;
    $('auth-error').textContent = message;
    $('panels').dataset.locked = 'true';
    $('key').focus();
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('auth').addEventListener('submit', (ev) => {
      ev.preventDefault();
      try { sessionStorage.setItem(KEY_NAME, $('key').value.trim()); } catch (e) { /* private mode: kept nowhere */ }
      $('key').value = '';
      delete $('panels').dataset.locked;
      refresh();
    });
    $('forget-key').addEventListener('click', () => {
      try { sessionStorage.removeItem(KEY_NAME); } catch (e) { /* nothing kept */ }
      refresh();
    });
    refresh();
  });
})();
