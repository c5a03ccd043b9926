/**
 * Plain SVG charts, written by hand so the README can embed the plots with no plotting dependency:
 * a line chart with optional log axes, and latency CDFs built on it.
 */

export interface Series {
  readonly name: string;
  readonly points: ReadonlyArray<readonly [number, number]>;
  /** Draw dots instead of a line (lag over time). */
  readonly dots?: boolean;
}

export interface ChartOptions {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly Series[];
  readonly logX?: boolean;
  readonly logY?: boolean;
  /** Horizontal reference lines, e.g. a target. */
  readonly hLines?: ReadonlyArray<{ y: number; label: string }>;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
const W = 720;
const H = 420;
const M = { left: 70, right: 20, top: 40, bottom: 90 };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function fmt(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1000) return `${Math.round(v / 100) / 10}k`;
  if (a >= 10) return String(Math.round(v));
  if (a >= 1) return String(Math.round(v * 10) / 10);
  return String(Math.round(v * 1000) / 1000);
}

function scale(min: number, max: number, log: boolean, from: number, to: number) {
  const f = (v: number) => (log ? Math.log10(Math.max(v, 1e-9)) : v);
  const lo = f(min);
  const hi = f(max) === lo ? lo + 1 : f(max);
  return (v: number) => from + ((f(v) - lo) / (hi - lo)) * (to - from);
}

function ticks(min: number, max: number, log: boolean): number[] {
  if (log) {
    const out: number[] = [];
    for (let e = Math.floor(Math.log10(Math.max(min, 1e-9))); e <= Math.ceil(Math.log10(max)); e++) {
      for (const m of [1, 2, 5]) {
        const v = m * 10 ** e;
        if (v >= min && v <= max) out.push(v);
      }
    }
    return out;
  }
  const span = max - min || 1;
  const step = 10 ** Math.floor(Math.log10(span / 5));
  const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => span / s <= 8) ?? step * 10;
  const out: number[] = [];
  for (let v = Math.ceil(min / nice) * nice; v <= max + 1e-9; v += nice) out.push(v);
  return out;
}

export function lineChart(o: ChartOptions): string {
  const all = o.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const xs = all.map(([x]) => x).filter((x) => !o.logX || x > 0);
  const ys = [...all.map(([, y]) => y), ...(o.hLines ?? []).map((h) => h.y)].filter((y) => !o.logY || y > 0);
  const xMin = xs.length ? Math.min(...xs) : 0;
  const xMax = xs.length ? Math.max(...xs) : 1;
  const yMin = o.logY ? (ys.length ? Math.min(...ys) : 0.1) : Math.min(0, ...ys);
  const yMax = ys.length ? Math.max(...ys) : 1;
  const sx = scale(xMin, xMax, o.logX ?? false, M.left, W - M.right);
  const sy = scale(yMin, yMax, o.logY ?? false, H - M.bottom, M.top);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(o.title)}</text>`,
  ];
  for (const t of ticks(xMin, xMax, o.logX ?? false)) {
    const x = sx(t);
    parts.push(`<line x1="${x}" x2="${x}" y1="${M.top}" y2="${H - M.bottom}" stroke="#eee"/>`);
    parts.push(`<text x="${x}" y="${H - M.bottom + 16}" text-anchor="middle">${fmt(t)}</text>`);
  }
  for (const t of ticks(yMin, yMax, o.logY ?? false)) {
    const y = sy(t);
    parts.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${y}" y2="${y}" stroke="#eee"/>`);
    parts.push(`<text x="${M.left - 6}" y="${y + 4}" text-anchor="end">${fmt(t)}</text>`);
  }
  parts.push(
    `<rect x="${M.left}" y="${M.top}" width="${W - M.left - M.right}" height="${H - M.top - M.bottom}" fill="none" stroke="#333"/>`,
    `<text x="${(M.left + W - M.right) / 2}" y="${H - M.bottom + 36}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text transform="translate(16 ${(M.top + H - M.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`,
  );
  for (const h of o.hLines ?? []) {
    const y = sy(h.y);
    parts.push(
      `<line x1="${M.left}" x2="${W - M.right}" y1="${y}" y2="${y}" stroke="#999" stroke-dasharray="6 4"/>`,
      `<text x="${W - M.right - 4}" y="${y - 4}" text-anchor="end" fill="#666">${esc(h.label)}</text>`,
    );
  }
  o.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const pts = s.points.filter(
      ([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.logX || x > 0) && (!o.logY || y > 0),
    );
    if (s.dots) {
      // One dot per pixel: tens of thousands of samples would otherwise make a megabyte file
      // that draws the same picture.
      const drawn = new Set<string>();
      for (const [x, y] of pts) {
        const cx = Math.round(sx(x));
        const cy = Math.round(sy(y));
        const at = `${cx} ${cy}`;
        if (drawn.has(at)) continue;
        drawn.add(at);
        parts.push(`<circle cx="${cx}" cy="${cy}" r="1.6" fill="${color}" opacity="0.6"/>`);
      }
    } else if (pts.length > 0) {
      const d = pts
        .map(([x, y], j) => `${j === 0 ? 'M' : 'L'}${sx(x).toFixed(1)} ${sy(y).toFixed(1)}`)
        .join(' ');
      parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"/>`);
    }
    const lx = M.left + (i % 3) * 215;
    const ly = H - 36 + Math.floor(i / 3) * 16;
    parts.push(
      `<rect x="${lx}" y="${ly - 9}" width="12" height="10" fill="${color}"/>`,
      `<text x="${lx + 16}" y="${ly}">${esc(s.name)}</text>`,
    );
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/** Latency CDFs (x: latency, log scale; y: percentile), one line per named sample set. */
export function cdfChart(title: string, samples: Record<string, readonly number[]>): string {
  const series: Series[] = Object.entries(samples).map(([name, values]) => {
    const sorted = [...values].sort((a, b) => a - b);
    const step = Math.max(1, Math.floor(sorted.length / 400));
    const points: Array<[number, number]> = [];
    for (let i = 0; i < sorted.length; i += step)
      points.push([sorted[i] ?? 0, ((i + 1) / sorted.length) * 100]);
    const last = sorted[sorted.length - 1];
    if (last !== undefined) points.push([last, 100]);
    return { name, points };
  });
  return lineChart({ title, xLabel: 'latency (ms, log scale)', yLabel: 'percentile', series, logX: true });
}
