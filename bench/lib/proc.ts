/**
 * CPU time and memory of a child process from /proc (Linux), so the relay's cost of a request
 * is measured in its own process and not mixed with the benchmark client's.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second for /proc/PID/stat; 100 on every Linux this runs on. */
const TICKS_PER_SECOND = 100;

/** User + system CPU time of `pid` so far, in ms (10 ms resolution). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1000) / TICKS_PER_SECOND;
}

/** Resident set size of `pid`, in bytes. */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) * 1024 : Number.NaN;
}

/** CPU ms spent by `pid` while `fn` ran. */
export async function cpuDuring<T>(pid: number, fn: () => Promise<T>): Promise<{ result: T; cpuMs: number }> {
  const before = cpuMs(pid);
  const result = await fn();
  return { result, cpuMs: cpuMs(pid) - before };
}

/** Pids of this process's descendants whose command line contains `name` (e.g. workerd). */
export function descendantPids(name: string, root = process.pid): number[] {
  const parents = new Map<number, number>();
  const commands = new Map<number, string>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      parents.set(pid, Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
      commands.set(pid, readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
    } catch {
      // exited meanwhile
    }
  }
  const isDescendant = (pid: number): boolean => {
    for (let p = parents.get(pid); p !== undefined && p > 1; p = parents.get(p)) if (p === root) return true;
    return false;
  };
  return [...commands].filter(([pid, cmd]) => cmd.includes(name) && isDescendant(pid)).map(([pid]) => pid);
}

/** CPU ms of several processes (missing ones count 0), and of this process. */
export function cpuSnapshot(pids: Record<string, number[]>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, list] of Object.entries(pids)) {
    out[name] = list.reduce((sum, pid) => {
      try {
        return sum + cpuMs(pid);
      } catch {
        return sum;
      }
    }, 0);
  }
  const self = process.cpuUsage();
  out.client = (self.user + self.system) / 1000;
  return out;
}

/** Cores used per process between two snapshots taken `seconds` apart. */
export function coresUsed(
  a: Record<string, number>,
  b: Record<string, number>,
  seconds: number,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(b)) out[k] = Math.round(((b[k] ?? 0) - (a[k] ?? 0)) / seconds / 10) / 100;
  return out;
}

/** Pids in process group `pgid` whose command line contains `name` (wrangler's workerd processes). */
export function groupPids(pgid: number, name: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const group = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
      if (group === pgid && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(name)) out.push(pid);
    } catch {
      // exited meanwhile
    }
  }
  return out;
}
