/** CPU time of single processes, for where the time of a lock operation goes. */
import fs from 'node:fs';

/** Linux reports CPU times in /proc in USER_HZ ticks, 100 per second on every common configuration. */
const MICROS_PER_TICK = 10_000;

/** User + system CPU time of process `pid` so far (its own threads), microseconds; NaN if unreadable. */
export function readProcessCpuMicros(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // pid (comm) state ppid ... utime(14) stime(15); comm may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * MICROS_PER_TICK;
  } catch {
    return Number.NaN;
  }
}

/** This process's CPU time so far, microseconds (exact, not in ticks). */
export function ownCpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** Whole-machine CPU (from /proc/stat) and this process tree's own, microseconds so far. */
export interface CpuSample {
  /** user + nice + system over all cores (irq and softirq left out: on loopback that is mostly our own traffic). */
  machineBusyUs: number;
  /** Time the hypervisor ran something else while a core of this VM wanted to run. */
  stealUs: number;
  /** This process and all its descendants (relays, etcd members, watchdogs): user + system of the live processes. */
  treeUs: number;
}

/** NaN fields off Linux. */
export function sampleCpu(): CpuSample {
  let machineBusyUs = Number.NaN;
  let stealUs = Number.NaN;
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    machineBusyUs = (f[0]! + f[1]! + f[2]!) * MICROS_PER_TICK;
    stealUs = (f[7] ?? 0) * MICROS_PER_TICK;
  } catch {
    // not Linux
  }
  return { machineBusyUs, stealUs, treeUs: treeCpuMicros() };
}

/** Own user + system time (not reaped children's) of this process and its live descendants. */
function treeCpuMicros(): number {
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return Number.NaN;
  }
  const parent = new Map<number, number>();
  const cpu = new Map<number, number>();
  for (const e of entries) {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    parent.set(Number(e), Number(fields[1]));
    cpu.set(Number(e), (Number(fields[11]) + Number(fields[12])) * MICROS_PER_TICK);
  }
  let total = 0;
  for (const [pid, micros] of cpu) {
    for (let p: number | undefined = pid, hops = 0; p !== undefined && p > 1 && hops < 64; p = parent.get(p), hops++) {
      if (p === process.pid) {
        total += micros;
        break;
      }
    }
  }
  return total;
}

/** CPU (percent of one core) the rest of the machine used between two samples; NaN off Linux. */
export function othersPct(from: CpuSample, to: CpuSample, wallMs: number): number {
  return (100 * Math.max(0, to.machineBusyUs - from.machineBusyUs - (to.treeUs - from.treeUs))) / (wallMs * 1000);
}

/**
 * Waits until the rest of the machine used less than `maxPct` of one core over `sampleMs`, or
 * `timeoutMs` passed. Resolves with what it used over the last sample (percent of one core).
 */
export async function waitForQuiet(maxPct: number, timeoutMs: number, sampleMs = 500): Promise<number> {
  const started = performance.now();
  for (;;) {
    const s0 = sampleCpu();
    const t0 = performance.now();
    await new Promise((resolve) => setTimeout(resolve, sampleMs));
    const used = othersPct(s0, sampleCpu(), performance.now() - t0);
    if (!(used >= maxPct) || performance.now() - started >= timeoutMs) return used;
  }
}
