/** Which code a run measured: the git commit, and whether the relay's sources had local changes. */
import { execFileSync } from 'node:child_process';

export function describeSourceVersion(repoDir: string): string {
  try {
    const git = (...args: string[]): string => execFileSync('git', ['-C', repoDir, ...args], { encoding: 'utf8' }).trim();
    const commit = git('rev-parse', '--short', 'HEAD');
    const dirty = git('status', '--porcelain', '--', 'packages').length > 0;
    return `commit ${commit}${dirty ? ' with uncommitted changes under packages/' : ''}`;
  } catch {
    return 'unknown (not a git checkout)';
  }
}
