/**
 * A throwaway PostgreSQL server for the cluster benchmark: Debian's binaries, `initdb` in a
 * temporary directory, the server on a free port of 127.0.0.1, stopped and removed after.
 *
 * Unlike the tests' cluster (test/support/postgres-cluster.ts, which turns fsync off because
 * tests kill processes, never the machine), this one keeps PostgreSQL's durable defaults (fsync
 * on, synchronous_commit on): the benchmark compares commits with the SQLite relay's fsync per
 * commit. It loads pg_stat_statements, so statements per update can be counted exactly.
 *
 * As root, initdb and postgres run as the `postgres` user (they refuse root). The postmaster is
 * killed when the bench process exits (on error and Ctrl-C too).
 */
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

const DEBIAN_ROOT = '/usr/lib/postgresql';
const SUPERUSER = 'capsync';

export interface BenchPostgres {
  readonly port: number;
  readonly version: string;
  /** The postmaster's pid (its children are the backends). */
  readonly pid: number;
  /** Creates an empty database with pg_stat_statements and resolves with its URL. */
  createDatabase(name: string): Promise<string>;
  /** A connection to `url` for the bench's own statistics queries. */
  connect(url: string): Promise<pg.Client>;
  /** Stops the server and removes its directory. */
  close(): Promise<void>;
}

/** The newest Debian PostgreSQL install's bin directory (POSTGRES_BIN overrides it). */
function findPostgres(): string {
  const configured = process.env['POSTGRES_BIN'];
  if (configured) return configured;
  const versions = fs.existsSync(DEBIAN_ROOT) ? fs.readdirSync(DEBIAN_ROOT).filter((v) => /^\d+$/.test(v)) : [];
  versions.sort((a, b) => Number(b) - Number(a));
  const found = versions.map((v) => path.join(DEBIAN_ROOT, v, 'bin')).find((d) => fs.existsSync(path.join(d, 'initdb')));
  if (!found) throw new Error(`PostgreSQL not found in ${DEBIAN_ROOT}/*/bin (apt-get install postgresql, or set POSTGRES_BIN)`);
  return found;
}

function serverUser(): string | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const name of ['postgres', 'nobody']) if (spawnSync('id', ['-u', name]).status === 0) return name;
  throw new Error('running as root, and neither the postgres nor the nobody user exists to run PostgreSQL as');
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function startPostgres(): Promise<BenchPostgres> {
  const binDir = findPostgres();
  const user = serverUser();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsync-bench-pg-'));
  if (user) {
    const id = (flag: string): number => Number(spawnSync('id', [flag, user], { encoding: 'utf8' }).stdout);
    fs.chownSync(dir, id('-u'), id('-g'));
  }
  const dataDir = path.join(dir, 'data');
  const run = (binary: string, args: string[]): Promise<string> => {
    const file = path.join(binDir, binary);
    const [cmd, argv] = user ? ['runuser', ['-u', user, '--', file, ...args]] : [file, args];
    return new Promise((resolve, reject) =>
      execFile(cmd, argv, { cwd: dir, timeout: 60_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`${binary} ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}`));
        else resolve(stdout);
      }),
    );
  };
  let pid = 0;
  const killNow = (): void => {
    if (pid) {
      try {
        process.kill(pid, 'SIGQUIT'); // immediate shutdown
      } catch {
        // gone already
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', killNow);
  try {
    await run('initdb', ['-D', dataDir, '-U', SUPERUSER, '--auth=trust', '-E', 'UTF8', '--no-locale', '--no-sync']);
    const port = await freePort();
    const options = [
      `-p ${port}`,
      "-c listen_addresses='127.0.0.1'",
      `-c unix_socket_directories='${dir}'`,
      '-c shared_preload_libraries=pg_stat_statements',
      '-c pg_stat_statements.track=all',
      '-c max_connections=200',
    ].join(' ');
    await run('pg_ctl', ['start', '-w', '-t', '60', '-D', dataDir, '-l', path.join(dir, 'postgres.log'), '-o', options]);
    pid = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const version = (await run('postgres', ['--version'])).trim();
    const url = (db: string): string => `postgres://${SUPERUSER}@127.0.0.1:${port}/${db}`;
    const connect = async (target: string): Promise<pg.Client> => {
      const client = new pg.Client({ connectionString: target });
      client.on('error', () => {});
      await client.connect();
      return client;
    };
    return {
      port,
      version,
      pid,
      connect,
      async createDatabase(name) {
        const admin = await connect(url('postgres'));
        try {
          await admin.query(`CREATE DATABASE ${name}`);
        } finally {
          await admin.end();
        }
        const db = await connect(url(name));
        try {
          await db.query('CREATE EXTENSION pg_stat_statements');
        } finally {
          await db.end();
        }
        return url(name);
      },
      async close() {
        await run('pg_ctl', ['stop', '-w', '-t', '60', '-m', 'fast', '-D', dataDir]).catch(() => {});
        pid = 0;
        process.off('exit', killNow);
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    killNow();
    process.off('exit', killNow);
    throw err;
  }
}
