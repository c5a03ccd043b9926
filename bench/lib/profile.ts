/**
 * CPU profiles of the processes under load, over the V8 inspector (Chrome DevTools protocol):
 * workerd through miniflare's `inspectorPort` (path `/core:user:<worker name>`, as wrangler's own
 * `check startup` profiler does) and the relay through `node --inspect`. A profile is written as
 * a `.cpuprofile` (open it in Chrome DevTools or speedscope) and summarised here as the functions
 * with the most self time and the most inclusive time, which is what README's Performance section
 * quotes.
 */
import { writeFileSync } from 'node:fs';
import WebSocket from 'ws';

/** The parts of a V8 CPU profile that the summary reads. */
export interface CpuProfile {
  nodes: Array<{
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }>;
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSession {
  /** Stops sampling and returns the profile. */
  stop(): Promise<CpuProfile>;
}

/** A Chrome DevTools protocol session: `call(method, params)` answers with the result. */
interface Inspector {
  call(method: string, params?: Record<string, unknown>): Promise<unknown>;
  close(): void;
}

async function inspect(url: string): Promise<Inspector> {
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  let nextId = 1;
  const waiting = new Map<number, (result: unknown) => void>();
  ws.on('message', (data) => {
    const message = JSON.parse(String(data)) as { id?: number; result?: unknown };
    if (message.id !== undefined) waiting.get(message.id)?.(message.result);
  });
  // An inspector that does not answer (a proxy that lost its target) must not hang the
  // benchmark: every call has a deadline.
  const call = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<unknown>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => reject(new Error(`inspector: no answer to ${method}`)), 15_000);
      waiting.set(id, (result) => {
        clearTimeout(timer);
        waiting.delete(id);
        resolve(result);
      });
      ws.send(JSON.stringify({ id, method, params }));
    });
  return { call, close: () => ws.close() };
}

/** Connects to an inspector WebSocket and starts sampling every `intervalUs`. */
export async function startProfile(url: string, intervalUs = 1000): Promise<ProfileSession> {
  const inspector = await inspect(url);
  await inspector.call('Runtime.enable');
  await inspector.call('Profiler.enable');
  await inspector.call('Profiler.setSamplingInterval', { interval: intervalUs });
  await inspector.call('Profiler.start');
  return {
    async stop() {
      const result = (await inspector.call('Profiler.stop')) as { profile: CpuProfile };
      inspector.close();
      return result.profile;
    },
  };
}

/**
 * Samples the V8 heap in use (`Runtime.getHeapUsage`) back to back until stopped; answers the
 * first sample and the largest. The isolate answers between tasks, so the peak is the largest
 * heap between two messages it handled (garbage not yet collected included).
 */
export async function sampleHeap(url: string): Promise<{ stop(): Promise<{ first: number; peak: number }> }> {
  const inspector = await inspect(url);
  const usage = async () => ((await inspector.call('Runtime.getHeapUsage')) as { usedSize: number }).usedSize;
  const first = await usage();
  let peak = first;
  let running = true;
  const loop = (async () => {
    while (running) {
      peak = Math.max(peak, await usage());
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      inspector.close();
      return { first, peak };
    },
  };
}

/**
 * The inspector WebSocket of a node process started with `--inspect=127.0.0.1:<port>`, or of a
 * workerd target whose id contains `match` (wrangler's and miniflare's inspector proxies list
 * their targets the same way).
 */
export async function nodeInspectorUrl(port: number, match = ''): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/json/list`);
  const targets = (await res.json()) as Array<{ id?: string; webSocketDebuggerUrl: string }>;
  const url = targets.find((t) => (t.id ?? '').includes(match))?.webSocketDebuggerUrl;
  if (url === undefined) throw new Error(`no inspector target on port ${port}`);
  return url;
}

export interface ProfileRow {
  readonly fn: string;
  readonly ms: number;
  readonly pct: number;
}

export interface ProfileSummary {
  readonly sampledMs: number;
  /** Share of samples in which the thread was idle (V8's "(idle)" node). */
  readonly idlePct: number;
  readonly self: ProfileRow[];
  readonly inclusive: ProfileRow[];
}

/** Top functions by self and inclusive time; a function is `name file:line` (file's basename). */
export function summarizeProfile(profile: CpuProfile, top = 15): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const label = (id: number) => {
    const f = byId.get(id)?.callFrame;
    if (f === undefined) return '?';
    const file = f.url.split('/').pop() ?? '';
    return `${f.functionName || '(anonymous)'}${file ? ` ${file}:${f.lineNumber + 1}` : ''}`;
  };
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let total = 0;
  let idle = 0;
  profile.samples.forEach((id, i) => {
    const dt = (profile.timeDeltas[i] ?? 0) / 1000;
    total += dt;
    const name = label(id);
    if (name.startsWith('(idle)')) idle += dt;
    self.set(name, (self.get(name) ?? 0) + dt);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const l = label(at);
      if (seen.has(l)) continue;
      seen.add(l);
      inclusive.set(l, (inclusive.get(l) ?? 0) + dt);
    }
  });
  const busy = total - idle;
  const rows = (m: Map<string, number>) =>
    [...m]
      .filter(([fn]) => !fn.startsWith('(idle)') && !fn.startsWith('(root)'))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([fn, ms]) => ({
        fn,
        ms: Math.round(ms),
        pct: busy > 0 ? Math.round((ms / busy) * 1000) / 10 : 0,
      }));
  return {
    sampledMs: Math.round(total),
    idlePct: total > 0 ? Math.round((idle / total) * 1000) / 10 : 0,
    self: rows(self),
    inclusive: rows(inclusive),
  };
}

/** Writes the raw profile next to the results, for a closer look in a profiler UI. */
export function saveProfile(file: string, profile: CpuProfile): void {
  writeFileSync(file, JSON.stringify(profile));
}
