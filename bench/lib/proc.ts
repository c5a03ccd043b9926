/**
 * CPU time and memory of a child process from /proc (Linux), so the relay's cost of a request
 * is measured in its own process and not mixed with the benchmark client's.
 */
import { readFileSync } from 'node:fs';

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
