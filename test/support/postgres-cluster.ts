/**
 * A real, throwaway PostgreSQL server for the tests of the PostgreSQL store and cluster mode:
 * the system's binaries (Debian's `postgresql` package), `initdb` in a temporary directory,
 * the server on a free port of 127.0.0.1 with its unix socket in that directory, and a fresh
 * database per test or suite (`createDatabase`). Usable from any package's tests.
 *
 * initdb and postgres refuse to run as root; as root (CI, containers) they run as the
 * `postgres` user (Debian's package creates it), else `nobody`, with the directory chowned.
 *
 * No server outlives the test process: `close()` stops it and removes the directory, and a
 * watchdog process SIGKILLs the postmaster and removes the directory when this process goes away
 * by any means, SIGKILL included (its backends exit when the postmaster dies).
 */
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { executable } from './executable.js';
import { freePorts } from './free-ports.js';
import { tempDir } from './relay-fixture.js';
import { Watchdog } from './watchdog.js';

const DEBIAN_ROOT = '/usr/lib/postgresql';
/** The superuser initdb creates; connections from 127.0.0.1 are trusted (throwaway cluster). */
const SUPERUSER = 'capsync';

function hasServerBinaries(dir: string): boolean {
  return ['initdb', 'pg_ctl', 'postgres'].every((b) => executable(path.join(dir, b)));
}

/**
 * The directory of initdb, pg_ctl and postgres: `POSTGRES_BIN` if set (and only it), else the
 * newest Debian install (/usr/lib/postgresql/<version>/bin: Debian does not put them on PATH),
 * else the first PATH directory that has all three. Null if none.
 */
export function findPostgres(env: NodeJS.ProcessEnv = process.env): string | null {
  const configured = env['POSTGRES_BIN'];
  if (configured) return hasServerBinaries(configured) ? configured : null;
  let versions: string[] = [];
  try {
    versions = fs.readdirSync(DEBIAN_ROOT).filter((v) => /^\d+(\.\d+)?$/.test(v));
  } catch {
    // Not installed the Debian way.
  }
  versions.sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const dir = path.join(DEBIAN_ROOT, v, 'bin');
    if (hasServerBinaries(dir)) return dir;
  }
  return (env['PATH'] ?? '').split(path.delimiter).find((dir) => dir && hasServerBinaries(dir)) ?? null;
}

/** Where `findPostgres` looked, for a message when it found nothing. */
export function postgresSearchDetail(env: NodeJS.ProcessEnv = process.env): string {
  const configured = env['POSTGRES_BIN'];
  return configured
    ? ` (POSTGRES_BIN=${configured} has no initdb, pg_ctl and postgres)`
    : ` (looked in ${DEBIAN_ROOT}/*/bin and on PATH for initdb, pg_ctl and postgres)`;
}

export interface PostgresCluster {
  readonly port: number;
  /** postgres://capsync@127.0.0.1:<port>/<database> */
  url(database: string): string;
  /** Creates an empty database with a fresh name and resolves with its URL. */
  createDatabase(): Promise<string>;
  readonly running: boolean;
  /** `pg_ctl stop -m fast`: ends every connection, shuts down cleanly. Resolves once it is down. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data; resolves once it accepts connections. */
  start(): Promise<void>;
  /**
   * A crash: SIGKILL to the postmaster and every backend, nothing shut down. Resolves once they
   * are gone; `start` then runs crash recovery from the WAL.
   */
  kill(): Promise<void>;
  /** Freezes the postmaster and every backend (SIGSTOP): connections stay open, nothing answers. */
  pause(): void;
  /** SIGCONT to the processes `pause` froze. */
  resume(): void;
  /**
   * A streaming standby of this server (pg_basebackup, then started on a free port in a
   * directory of its own). It is synchronous once `synchronous_standby_names` names it ('*').
   */
  startStandby(): Promise<PostgresCluster>;
  /** Stops it and removes its directory. */
  close(): Promise<void>;
  /** The end of the server's log, for a failing test to print. */
  logTail(bytes?: number): string;
}

/** The unprivileged user to run the server as when this process is root; undefined otherwise. */
function serverUser(): { name: string; uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const name of ['postgres', 'nobody']) {
    const uid = spawnSync('id', ['-u', name], { encoding: 'utf8' });
    const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' });
    if (uid.status === 0 && gid.status === 0) return { name, uid: Number(uid.stdout), gid: Number(gid.stdout) };
  }
  throw new Error('running as root, and neither the postgres nor the nobody user exists to run PostgreSQL as');
}

class Cluster implements PostgresCluster {
  private databases = 0;
  private up = false;
  private readonly dataDir: string;
  private readonly logFile: string;

  constructor(
    private readonly binDir: string,
    private readonly dir: string,
    readonly port: number,
    private readonly user: ReturnType<typeof serverUser>,
    private readonly watchdog: Watchdog,
  ) {
    this.dataDir = path.join(dir, 'data');
    this.logFile = path.join(dir, 'postgres.log');
  }

  get running(): boolean {
    return this.up;
  }

  url(database: string): string {
    return `postgres://${SUPERUSER}@127.0.0.1:${this.port}/${database}`;
  }

  /** Runs one of the server binaries, as the unprivileged user when this process is root. */
  private run(binary: string, args: string[]): Promise<void> {
    const file = path.join(this.binDir, binary);
    const [cmd, argv] = this.user ? ['runuser', ['-u', this.user.name, '--', file, ...args]] : [file, args];
    return new Promise((resolve, reject) => {
      // cwd: the user may not be allowed into this process's working directory.
      execFile(cmd, argv, { cwd: this.dir, timeout: 60_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`${binary} ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}\n${this.logTail()}`));
        else resolve();
      });
    });
  }

  async init(): Promise<void> {
    await this.run('initdb', ['-D', this.dataDir, '-U', SUPERUSER, '--auth=trust', '-E', 'UTF8', '--no-locale', '--no-sync']);
  }

  async start(): Promise<void> {
    if (this.up) return;
    const options = [
      `-p ${this.port}`,
      "-c listen_addresses='127.0.0.1'",
      `-c unix_socket_directories='${this.dir}'`,
      // The tests kill processes, never the machine: a commit in the OS's cache survives them,
      // so fsync is off to spare the disk. Commits still wait for the WAL write (synchronous_commit).
      '-c fsync=off',
      '-c full_page_writes=off',
    ].join(' ');
    // -w: returns once the server accepts connections (or failed to start).
    await this.run('pg_ctl', ['start', '-w', '-t', '60', '-D', this.dataDir, '-l', this.logFile, '-o', options]);
    this.up = true;
    this.watchdog.watch(this.postmasterPid());
  }

  async stop(): Promise<void> {
    if (!this.up) return;
    const pid = this.postmasterPid();
    await this.run('pg_ctl', ['stop', '-w', '-t', '60', '-m', 'fast', '-D', this.dataDir]);
    this.up = false;
    this.watchdog.forget(pid);
  }

  private paused: number[] = [];

  /** The postmaster and its children (backends, checkpointer, ...), from /proc. */
  private processes(): number[] {
    const postmaster = this.postmasterPid();
    const children = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((d) => {
      try {
        // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after ')'.
        const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === postmaster;
      } catch {
        return false;
      }
    });
    return [postmaster, ...children.map(Number)];
  }

  async kill(): Promise<void> {
    if (!this.up) return;
    // Stopped first, so it forks no backend between the listing of its children and the kill.
    process.kill(this.postmasterPid(), 'SIGSTOP');
    const pids = this.processes();
    for (const pid of pids) process.kill(pid, 'SIGKILL');
    this.up = false;
    this.watchdog.forget(pids[0]!);
    // Gone once signal 0 fails for each; a restart before that finds their shared memory in use.
    const gone = (pid: number): boolean => {
      try {
        process.kill(pid, 0);
        // A zombie (not yet reaped by its parent) still answers signal 0 but holds nothing.
        return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
      } catch {
        return true;
      }
    };
    const deadline = Date.now() + 30_000;
    while (!pids.every(gone)) {
      if (Date.now() > deadline) throw new Error('PostgreSQL processes still alive 30 s after SIGKILL');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // The postmaster may stay a zombie (its parent, after pg_ctl exited, need not reap it), which
    // PostgreSQL's lock file check takes for a live server: the file goes, as after a reboot.
    fs.rmSync(path.join(this.dataDir, 'postmaster.pid'), { force: true });
    fs.rmSync(path.join(this.dir, `.s.PGSQL.${this.port}.lock`), { force: true });
  }

  pause(): void {
    // The children too: they would answer without the postmaster.
    this.paused = this.processes();
    for (const pid of this.paused) process.kill(pid, 'SIGSTOP');
  }

  resume(): void {
    for (const pid of this.paused) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // Gone meanwhile.
      }
    }
    this.paused = [];
  }

  async startStandby(): Promise<PostgresCluster> {
    const tmp = tempDir('capsync-pg-standby-');
    if (this.user) fs.chownSync(tmp.dir, this.user.uid, this.user.gid);
    const watchdog = new Watchdog(tmp.dir);
    try {
      const [port] = await freePorts(1);
      const standby = new Cluster(this.binDir, tmp.dir, port!, this.user, watchdog);
      // -R: standby.signal and the primary's connection info, so it starts as its standby;
      // a fast checkpoint, or the backup waits for a spread one (minutes).
      await standby.run('pg_basebackup', ['-D', standby.dataDir, '-h', '127.0.0.1', '-p', String(this.port), '-U', SUPERUSER, '-R', '-X', 'stream', '--no-sync', '--checkpoint=fast']);
      await standby.start();
      return standby;
    } catch (err) {
      watchdog.close();
      tmp.remove();
      throw err;
    }
  }

  async createDatabase(): Promise<string> {
    const name = `capsync_test_${++this.databases}`;
    const admin = new pg.Client({ connectionString: this.url('postgres') });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${name}`);
    } finally {
      await admin.end();
    }
    return this.url(name);
  }

  async close(): Promise<void> {
    this.resume();
    await this.stop().catch(() => {});
    this.watchdog.close();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** The postmaster's pid: the first line of postmaster.pid (written before pg_ctl -w returns). */
  private postmasterPid(): number {
    return Number(fs.readFileSync(path.join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  }

  logTail(bytes = 2_000): string {
    try {
      return `--- postgres.log ---\n${fs.readFileSync(this.logFile, 'utf8').slice(-bytes)}`;
    } catch {
      return '(no postgres.log)';
    }
  }
}

/**
 * Initialises and starts a throwaway PostgreSQL server; resolves once it accepts connections.
 * Tries a second port if the first, free a moment ago, was taken by the time postgres bound it.
 */
export async function startPostgres(options: { binDir?: string } = {}): Promise<PostgresCluster> {
  const binDir = options.binDir ?? findPostgres();
  if (!binDir) throw new Error(`PostgreSQL not found${postgresSearchDetail()}`);
  const user = serverUser();
  const tmp = tempDir('capsync-pg-');
  if (user) fs.chownSync(tmp.dir, user.uid, user.gid);
  const watchdog = new Watchdog(tmp.dir);
  let cluster: Cluster | undefined;
  try {
    for (let attempt = 1; ; attempt++) {
      const [port] = await freePorts(1);
      cluster = new Cluster(binDir, tmp.dir, port!, user, watchdog);
      if (attempt === 1) await cluster.init();
      try {
        await cluster.start();
        return cluster;
      } catch (err) {
        if (attempt >= 2) throw err;
      }
    }
  } catch (err) {
    watchdog.close();
    tmp.remove();
    throw err;
  }
}
