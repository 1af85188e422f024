/**
 * `npm run bench`: the relay benchmark, then the client benchmark, then the lock benchmark,
 * then the mesh convergence benchmark, then the many-documents-over-one-socket benchmark, each
 * through its own npm script (bench:relay, bench:client, bench:locks, bench:converge,
 * bench:mux), with the flags all
 * of them understand passed to each. (npm appends `-- flags` only to the end of a script line,
 * so `a && b` would give them to b only.) Flags of one benchmark only go to its own script:
 * `npm run bench:relay -- --levels 500`.
 */
import { spawnSync } from 'node:child_process';

const SHARED = new Set(['--quick', '--write', '--no-write']);
const SCRIPTS = ['bench:relay', 'bench:client', 'bench:locks', 'bench:converge', 'bench:mux'];

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  process.stdout.write(
    'usage: npm run bench [-- [--quick] [--write | --no-write]]\n\n' +
      `Runs ${SCRIPTS.join(', then ')}. Their own flags: ${SCRIPTS.map((s) => `npm run ${s} -- --help`).join(', ')}\n`,
  );
  process.exit(0);
}
const unknown = args.filter((a) => !SHARED.has(a));
if (unknown.length > 0) {
  process.stderr.write(
    `npm run bench passes only ${[...SHARED].join(', ')} to every benchmark; got ${unknown.join(' ')}.\n` +
      `Use ${SCRIPTS.map((s) => `npm run ${s} -- …`).join(', ')} for the flags of one benchmark.\n`,
  );
  process.exit(2);
}

// Inside an npm script npm_execpath names npm's CLI; run it with this Node.
const npmCli = process.env['npm_execpath'];
for (const script of SCRIPTS) {
  const command = npmCli ? process.execPath : 'npm';
  const result = spawnSync(command, [...(npmCli ? [npmCli] : []), 'run', script, ...(args.length > 0 ? ['--', ...args] : [])], {
    stdio: 'inherit',
  });
  if (result.error) throw result.error;
  if (result.status !== 0) process.exit(result.status ?? 1);
}
