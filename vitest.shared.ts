import { defineConfig } from 'vitest/config';

/**
 * Shared Vitest settings: tests import sibling packages through their `source` export
 * condition, so they run against src/ and never wait for a build.
 */
export function capsyncVitestConfig(overrides: { testTimeout?: number; include?: string[] } = {}) {
  return defineConfig({
    resolve: { conditions: ['source', 'module', 'node', 'import', 'default'] },
    ssr: { resolve: { conditions: ['source', 'module', 'node', 'import', 'default'], externalConditions: ['source'] } },
    test: {
      environment: 'node',
      include: overrides.include ?? ['test/**/*.test.ts'],
      testTimeout: overrides.testTimeout ?? 20_000,
      hookTimeout: 20_000,
      pool: 'forks',
    },
  });
}
