/**
 * CPU time by process from /proc, split into the bench's own tree, the shared store's tree
 * (PostgreSQL is not the bench's descendant: pg_ctl daemonizes it) and everything else.
 *
 * Only each process's own utime + stime are summed, not the time of children it reaped
 * (cutime/cstime): a long-lived process reaping a child (a shell, a test runner) would
 * otherwise count the child's whole life in one window. A process that exits within a window
 * is missed; one born in it counts whole.
 */
import fs from 'node:fs';

const MICROS_PER_TICK = 10_000;

export interface ProcSample {
  /** pid -> [parent pid, own CPU micros]. */
  procs: Map<number, [number, number]>;
}

export function sampleProcs(): ProcSample | null {
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return null;
  }
  const procs = new Map<number, [number, number]>();
  for (const e of entries) {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // pid (comm) state ppid ... utime(14) stime(15); comm may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    procs.set(Number(e), [Number(fields[1]), (Number(fields[11]) + Number(fields[12])) * MICROS_PER_TICK]);
  }
  return { procs };
}

function under(procs: Map<number, [number, number]>, pid: number, root: number): boolean {
  for (let p: number | undefined = pid, hops = 0; p !== undefined && p > 0 && hops < 64; p = procs.get(p)?.[0], hops++) {
    if (p === root) return true;
  }
  return false;
}

/** CPU micros between two samples of the tree under `root` (null: none), and of all others (kernel threads left out). */
export function cpuBetween(from: ProcSample | null, to: ProcSample | null, ownRoot: number, storeRoot: number | null): { store: number; others: number } {
  if (!from || !to) return { store: Number.NaN, others: Number.NaN };
  let store = 0;
  let others = 0;
  for (const [pid, [ppid, micros]] of to.procs) {
    const delta = Math.max(0, micros - (from.procs.get(pid)?.[1] ?? 0));
    if (storeRoot !== null && under(to.procs, pid, storeRoot)) store += delta;
    else if (under(to.procs, pid, ownRoot) || pid === 2 || ppid === 2) continue;
    else others += delta;
  }
  return { store, others };
}
