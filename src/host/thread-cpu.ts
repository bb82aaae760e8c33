/**
 * The CPU time of the calling thread, for a machine's CPU limit (src/vm/cpu-limit.ts) and its
 * stats. A machine runs on a worker thread of its own, so this is the machine's CPU: its
 * instructions, its devices, its event loop; not the time it waited for a core.
 *
 * Node 20 has no per-thread CPU clock (`process.threadCpuUsage` arrived in Node 23.9; used
 * when present). On Linux the kernel tells each thread its own through /proc/thread-self:
 * `schedstat` (nanoseconds on a CPU; kernels with schedstats, as Debian's) or else `stat`
 * (utime + stime in clock ticks, 10 ms each: USER_HZ is 100 on every Linux port Node runs on).
 * /proc/thread-self names the thread that opens it, so the file is opened by the thread
 * that asks, once, and re-read at offset 0 (~5 µs a read). Elsewhere there is no clock:
 * undefined, and the limit counts busy wall time instead (cpu-limit.ts says what that costs).
 */
import { openSync, readSync } from 'node:fs';
import type { CpuClock } from '../vm/cpu-limit.js';

const USER_HZ = 100;

/** Milliseconds of CPU the reading thread has used, from schedstat's or stat's text; NaN when it cannot be read. */
export function parseThreadCpuMs(kind: 'schedstat' | 'stat', text: string): number {
  if (kind === 'schedstat') return Number(text.split(' ')[0]) / 1e6;
  // The command name (field 2) is in parentheses and may hold spaces: fields count from its end.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / USER_HZ; // utime, stime: fields 14 and 15
}

function procClock(kind: 'schedstat' | 'stat'): CpuClock | undefined {
  let fd: number;
  try {
    fd = openSync(`/proc/thread-self/${kind}`, 'r');
  } catch {
    return undefined;
  }
  const buf = Buffer.alloc(kind === 'schedstat' ? 128 : 1024);
  const read = (): number => {
    try {
      return parseThreadCpuMs(kind, buf.toString('latin1', 0, readSync(fd, buf, 0, buf.length, 0)));
    } catch {
      return NaN;
    }
  };
  if (!Number.isFinite(read())) return undefined;
  // The clock is monotonic; should a read ever fail, the last good value stands.
  let last = 0;
  return () => {
    const v = read();
    if (Number.isFinite(v) && v >= last) last = v;
    return last;
  };
}

let clock: { value: CpuClock | undefined } | undefined;

/**
 * The calling thread's CPU clock (milliseconds), or undefined where the host has none. Call it
 * on the thread to be measured (one clock per thread: module state is per worker).
 */
export function threadCpuClock(): CpuClock | undefined {
  if (clock) return clock.value;
  const node = (process as { threadCpuUsage?: () => { user: number; system: number } }).threadCpuUsage;
  let value: CpuClock | undefined;
  if (typeof node === 'function') {
    value = () => {
      const u = node.call(process);
      return (u.user + u.system) / 1000;
    };
  } else if (process.platform === 'linux') {
    value = procClock('schedstat') ?? procClock('stat');
  }
  clock = { value };
  return value;
}
