// The relay's dashboard: polls /_relay/status and /metrics (same origin) and redraws the page.
// Plain browser JavaScript, no build step and no framework; every value goes into the page
// through textContent, never as HTML (prefixes and replica names are not ours to trust).
//
// Rates come from differences between two scrapes of the Prometheus counters: events/s from
// edgewatch_watch_cache_events_received_total, list latency quantiles from the buckets of
// edgewatch_list_duration_seconds (interpolated as Prometheus' histogram_quantile does).

const params = new URLSearchParams(location.search);
const INTERVAL_MS = Math.max(200, Number(params.get('interval') ?? 1000));
/** Points on the chart: two minutes at the default interval. */
const POINTS = 120;

const points = [];
let previous;
let updates = 0;

/** Prometheus text → [{ name, labels, value }] (only what our series need). */
function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    const labelRe = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g;
    for (let m = labelRe.exec(match[2] ?? ''); m !== null; m = labelRe.exec(match[2] ?? '')) {
      labels[m[1]] = m[2];
    }
    samples.push({ name: match[1], labels, value: match[3] === '+Inf' ? Infinity : Number(match[3]) });
  }
  return samples;
}

function sum(samples, name) {
  return samples.filter((s) => s.name === name).reduce((total, s) => total + s.value, 0);
}

/** Cumulative bucket counts by upper bound, summed over every other label. */
function buckets(samples, name) {
  const byBound = new Map();
  for (const s of samples) {
    if (s.name !== `${name}_bucket`) continue;
    const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
    byBound.set(le, (byBound.get(le) ?? 0) + s.value);
  }
  return [...byBound].sort((a, b) => a[0] - b[0]);
}

/** histogram_quantile over the increase between two scrapes; undefined with no observations. */
function quantile(q, now, before) {
  const increase = now.map(([le, count], i) => [le, count - (before?.[i]?.[1] ?? 0)]);
  const total = increase.at(-1)?.[1] ?? 0;
  if (total <= 0) return undefined;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [le, count] of increase) {
    if (count >= rank) {
      if (le === Infinity) return lowerBound;
      return lowerBound + ((le - lowerBound) * (rank - lowerCount)) / Math.max(count - lowerCount, 1e-9);
    }
    lowerBound = le;
    lowerCount = count;
  }
  return lowerBound;
}

function ms(seconds) {
  if (seconds === undefined) return '–';
  const value = seconds * 1000;
  return value < 10 ? `${value.toFixed(2)} ms` : `${value.toFixed(0)} ms`;
}

function ago(milliseconds) {
  if (milliseconds < 1000) return `${milliseconds} ms ago`;
  return `${(milliseconds / 1000).toFixed(1)} s ago`;
}

function field(name) {
  return document.querySelector(`[data-field="${name}"]`);
}

/** Replaces a table body's rows; each row is [key, [[fieldName, text, className?], …]]. */
function fillTable(id, keyAttribute, rows) {
  const body = document.querySelector(`#${id} tbody`);
  const fresh = rows.map(([key, cells]) => {
    const tr = document.createElement('tr');
    tr.dataset[keyAttribute] = key;
    for (const [name, text, className] of cells) {
      const td = document.createElement('td');
      td.dataset.field = name;
      td.textContent = text;
      if (className) td.className = className;
      tr.append(td);
    }
    return tr;
  });
  body.replaceChildren(...fresh);
}

function render(status, rates) {
  const ready = status.readiness?.ready === true;
  const pill = field('readiness');
  pill.textContent = ready ? 'ready' : 'not ready';
  pill.className = `pill ${ready ? 'ok' : 'bad'}`;
  field('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
  field('events-per-second').textContent =
    rates.eventsPerSecond === undefined ? '–' : rates.eventsPerSecond.toFixed(1);
  field('list-latency').textContent = `${ms(rates.p50)} / ${ms(rates.p99)}`;
  field('replica-count').textContent = String(status.edges.length);
  field('watchers').textContent = String(status.watchers);

  fillTable(
    'prefixes',
    'prefix',
    status.prefixes.map((p) => {
      const history = p.history ?? {};
      const last = history.lastResult ?? 'not yet';
      const good = history.lastGoodAt ? ago(Date.now() - history.lastGoodAt) : '–';
      return [
        p.prefix,
        [
          ['prefix', p.prefix],
          ['ready', p.ready ? 'yes' : 'no', p.ready ? 'ok' : 'bad'],
          ['revision', String(p.revision)],
          ['objects', String(p.objects)],
          ['subscribers', String(p.subscribers)],
          ['history-start', String(p.historyStart)],
          ['self-check', last, last === 'ok' ? 'ok' : last === 'mismatch' ? 'bad' : ''],
          ['last-good', good],
        ],
      ];
    }),
  );

  fillTable(
    'edges',
    'replica',
    status.edges.map((e) => [
      e.replica,
      [
        ['location', e.location],
        ['prefix', e.prefix],
        ['revision', String(e.revision)],
        ['lag-revisions', String(e.lagRevisions), e.lagRevisions === 0 ? 'ok' : ''],
        ['lag-seconds', e.lagSeconds.toFixed(2)],
        ['watchers', e.watchers === null ? '–' : String(e.watchers)],
        ['last-message', ago(e.lastMessageMs)],
        ['self-check', e.selfCheck ?? '–', e.selfCheck === 'ok' ? 'ok' : e.selfCheck ? 'bad' : ''],
        ['stream', e.paused ? 'paused (slow reader)' : (e.mode ?? 'starting')],
      ],
    ]),
  );
  document.getElementById('no-edges').hidden = status.edges.length > 0;

  const checks = (status.readiness?.checks ?? []).map((c) => {
    const li = document.createElement('li');
    li.dataset.check = c.name;
    li.textContent = c.ok ? `${c.name}: ok` : `${c.name}: ${c.reason}`;
    if (!c.ok) li.className = 'bad';
    return li;
  });
  document.getElementById('checks').replaceChildren(...checks);
}

function drawChart() {
  const canvas = document.getElementById('chart');
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  const pad = 8;
  ctx.clearRect(0, 0, width, height);
  ctx.strokeStyle = '#e3e7ee';
  ctx.lineWidth = 1;
  for (let i = 1; i < 4; i++) {
    const y = Math.round((height * i) / 4) + 0.5;
    ctx.beginPath();
    ctx.moveTo(0, y);
    ctx.lineTo(width, y);
    ctx.stroke();
  }
  const series = [
    ['eventsPerSecond', '#2f6fde', 'chart-events-max', (v) => v.toFixed(0)],
    ['p99', '#e07b22', 'chart-latency-max', (v) => (v * 1000).toFixed(1)],
  ];
  for (const [key, color, label, format] of series) {
    const values = points.map((p) => p[key]);
    const max = Math.max(...values.filter((v) => v !== undefined), 0);
    field(label).textContent = `(max ${format(max)})`;
    if (max <= 0) continue;
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let drawing = false;
    values.forEach((v, i) => {
      const x = pad + ((width - 2 * pad) * i) / (POINTS - 1);
      if (v === undefined) {
        drawing = false;
        return;
      }
      const y = height - pad - ((height - 2 * pad) * v) / max;
      if (drawing) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
      drawing = true;
    });
    ctx.stroke();
  }
}

async function tick() {
  try {
    const [status, text] = await Promise.all([
      fetch('/_relay/status', { cache: 'no-store' }).then((r) => r.json()),
      fetch('/metrics', { cache: 'no-store' }).then((r) => r.text()),
    ]);
    const samples = parseMetrics(text);
    const now = {
      t: performance.now(),
      events: sum(samples, 'edgewatch_watch_cache_events_received_total'),
      lists: buckets(samples, 'edgewatch_list_duration_seconds'),
    };
    const rates = {};
    if (previous !== undefined) {
      const seconds = (now.t - previous.t) / 1000;
      rates.eventsPerSecond = Math.max(0, now.events - previous.events) / seconds;
      rates.p50 = quantile(0.5, now.lists, previous.lists);
      rates.p99 = quantile(0.99, now.lists, previous.lists);
      points.push(rates);
      if (points.length > POINTS) points.shift();
    }
    previous = now;
    render(status, rates);
    drawChart();
    updates += 1;
    document.body.dataset.updates = String(updates);
  } catch (error) {
    field('updated').textContent = `update failed: ${error}`;
  } finally {
    setTimeout(tick, INTERVAL_MS);
  }
}

void tick();
