/** Command-line plumbing shared by the benchmark entry points. */

/** "a, b,,c" → ['a', 'b', 'c']: the value of a comma-separated list flag. */
export function list(v: string): string[] {
  return v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/**
 * Parses argv with `parse`. On --help prints `usage` and returns null; on a bad flag prints
 * the error and `usage`, sets exit code 2 and returns null. Otherwise returns the options.
 */
export function parseOrExplain<T>(parse: (argv: string[]) => T | 'help', usage: string, argv = process.argv.slice(2)): T | null {
  let options: T | 'help';
  try {
    options = parse(argv);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${usage}`);
    process.exitCode = 2;
    return null;
  }
  if (options === 'help') {
    process.stdout.write(usage);
    return null;
  }
  return options;
}
