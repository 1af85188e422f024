import { spawn, type ChildProcess } from 'node:child_process';
import type net from 'node:net';

/**
 * One process that outlives nothing: it reads "+pid"/"-pid" lines on stdin and, when stdin
 * closes (this process exited or was killed, or the cluster was closed), SIGKILLs the pids
 * still listed and removes the temporary directory it was given (a cluster's: etcd, PostgreSQL).
 */
export class Watchdog {
  private readonly child: ChildProcess;

  constructor(dir: string) {
    const script = `
      const pids = new Set();
      let buf = '';
      process.stdin.setEncoding('utf8');
      process.stdin.on('data', (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\\n')) >= 0) {
          const line = buf.slice(0, i); buf = buf.slice(i + 1);
          const pid = Number(line.slice(1));
          if (line[0] === '+') pids.add(pid); else pids.delete(pid);
        }
      });
      process.stdin.on('end', () => {
        for (const pid of pids) { try { process.kill(pid, 'SIGKILL'); } catch {} }
        // Killed processes may hold files open for a moment; rm copes with that on Linux.
        require('fs').rmSync(process.argv[1], { recursive: true, force: true });
        process.exit(0);
      });
    `;
    this.child = spawn(process.execPath, ['-e', script, dir], { stdio: ['pipe', 'ignore', 'ignore'] });
    this.child.on('error', () => {});
    this.child.stdin?.on('error', () => {});
    // Neither the watchdog nor its pipe may keep this process alive.
    this.child.unref();
    (this.child.stdin as unknown as net.Socket | null)?.unref();
  }

  watch(pid: number): void {
    this.child.stdin?.write(`+${pid}\n`);
  }

  forget(pid: number): void {
    this.child.stdin?.write(`-${pid}\n`);
  }

  close(): void {
    this.child.stdin?.end();
  }
}
