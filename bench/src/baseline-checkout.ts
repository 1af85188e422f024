/**
 * A checkout of another commit of this repository, so the relay benchmark can run the relay as
 * it was (`--baseline <git-ref>`) next to the relay as it is, in the same run: on a shared,
 * noisy machine only a same-run ratio says whether a change cost throughput.
 *
 * The checkout is a detached `git worktree` in a temp directory with a copy of this tree's
 * installed node_modules (the workspace links in it are relative, so they resolve to the
 * checkout's own packages). It is removed when the bench exits.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface BaselineCheckout {
  /** The ref as given, and the commit it resolved to. */
  ref: string;
  commit: string;
  /** Root of the checkout (its bench/ holds the same server entry points). */
  root: string;
}

/** Workspace folders whose own node_modules (if any) the checkout needs too. */
const WORKSPACE_DIRS = ['packages/core', 'packages/server', 'packages/client', 'test', 'bench'];

export function checkoutBaseline(repoDir: string, ref: string): BaselineCheckout {
  const git = (...args: string[]): string => execFileSync('git', ['-C', repoDir, ...args], { encoding: 'utf8' }).trim();
  const commit = git('rev-parse', '--verify', `${ref}^{commit}`);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'capsync-baseline-'));
  git('worktree', 'add', '--detach', '--force', root, commit);
  process.once('exit', () => {
    try {
      execFileSync('git', ['-C', repoDir, 'worktree', 'remove', '--force', root], { stdio: 'ignore' });
    } catch {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
  for (const dir of ['', ...WORKSPACE_DIRS]) {
    const from = path.join(repoDir, dir, 'node_modules');
    if (fs.existsSync(from)) fs.cpSync(from, path.join(root, dir, 'node_modules'), { recursive: true, verbatimSymlinks: true });
  }
  return { ref, commit: commit.slice(0, 7), root };
}
