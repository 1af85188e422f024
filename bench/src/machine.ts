/** The machine a run happened on, for the results. */
import fs from 'node:fs';
import os from 'node:os';

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
}

export function describeMachine(): Machine {
  return {
    cpu: cpuModel(),
    cores: os.cpus().length,
    memoryGiB: os.totalmem() / 2 ** 30,
    os: `${os.type()} ${os.release()}`,
    node: process.version,
  };
}

function cpuModel(): string {
  try {
    const line = fs
      .readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('model name'));
    if (line) return line.slice(line.indexOf(':') + 1).trim();
  } catch {
    // not Linux: fall through
  }
  return os.cpus()[0]?.model ?? 'unknown CPU';
}

/** Linux reports CPU times in /proc in USER_HZ ticks, 100 per second on every common configuration. */
const MICROS_PER_TICK = 10_000;

/** CPU time of every process but this one, its descendants (the servers) and kernel threads, from /proc. */
export interface OthersCpu {
  /** pid -> CPU micros so far (own time plus that of its reaped children). */
  byPid: Map<number, number>;
}

/**
 * Samples the CPU time of all processes outside this process tree; null off Linux.
 * Per-process counters are used rather than /proc/stat's machine totals: those are sampled
 * on timer ticks and miss most of the short, timer-aligned bursts a paced load consists of.
 */
export function sampleOthersCpu(): OthersCpu | null {
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return null;
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
    // pid (comm) state ppid ... utime(14) stime(15) cutime(16) cstime(17); comm may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const pid = Number(e);
    parent.set(pid, Number(fields[1]));
    const ticks = Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    cpu.set(pid, ticks * MICROS_PER_TICK);
  }
  const ours = (pid: number): boolean => {
    for (let p: number | undefined = pid, hops = 0; p !== undefined && p > 1 && hops < 64; p = parent.get(p), hops++) {
      if (p === process.pid) return true;
    }
    return false;
  };
  // Kernel threads (children of kthreadd, pid 2) are left out too: under load they mostly
  // process our own loopback traffic (ksoftirqd).
  for (const pid of cpu.keys()) if (ours(pid) || pid === 2 || parent.get(pid) === 2) cpu.delete(pid);
  return { byPid: cpu };
}

/** CPU micros other processes used between two samples (processes born in between count whole). */
export function othersCpuMicros(from: OthersCpu | null, to: OthersCpu | null): number {
  if (!from || !to) return Number.NaN;
  let micros = 0;
  for (const [pid, now] of to.byPid) micros += Math.max(0, now - (from.byPid.get(pid) ?? 0));
  return micros;
}

/**
 * Waits until other processes used less than `maxOtherPct` of one core over a `sampleMs`
 * interval, or until `timeoutMs` passed. Resolves with the milliseconds waited.
 */
export async function waitForQuietMachine(maxOtherPct: number, timeoutMs: number, sampleMs = 500): Promise<number> {
  const started = performance.now();
  for (;;) {
    const s0 = sampleOthersCpu();
    if (!s0) return 0;
    const t0 = performance.now();
    await new Promise((resolve) => setTimeout(resolve, sampleMs));
    const otherPct = (100 * othersCpuMicros(s0, sampleOthersCpu())) / ((performance.now() - t0) * 1000);
    const waited = performance.now() - started;
    if (otherPct < maxOtherPct || waited >= timeoutMs) return waited;
  }
}
