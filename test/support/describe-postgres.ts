import { afterAll, beforeAll, describe, it } from 'vitest';
import { onCI } from './browser.js';
import { findPostgres, postgresSearchDetail, startPostgres, type PostgresCluster } from './postgres-cluster.js';

export const POSTGRES_MISSING = 'PostgreSQL tests skipped: PostgreSQL not found; install it with `apt-get install -y postgresql` or set POSTGRES_BIN';

/**
 * `describe` for tests that need a PostgreSQL server. It starts one throwaway server for the
 * suite (`pg()` gives it to the tests; `pg().createDatabase()` a fresh database) and removes it
 * after. Without PostgreSQL: on CI the suite fails with a test that says why; elsewhere it is
 * skipped and the run says so plainly, once per file.
 */
export function describePostgres(name: string, fn: (pg: () => PostgresCluster) => void): void {
  const binDir = findPostgres();
  if (binDir) {
    describe(name, () => {
      let cluster: PostgresCluster | undefined;
      beforeAll(async () => {
        cluster = await startPostgres({ binDir });
      }, 120_000);
      afterAll(() => cluster?.close());
      fn(() => {
        if (!cluster) throw new Error('the PostgreSQL server did not start (see the suite setup error)');
        return cluster;
      });
    });
  } else if (onCI()) {
    describe(name, () => {
      it('needs PostgreSQL (CI is set, so a missing PostgreSQL fails the run)', () => {
        throw new Error(`PostgreSQL not found${postgresSearchDetail()}; install it with \`apt-get install -y postgresql\` or set POSTGRES_BIN`);
      });
    });
  } else {
    console.warn(`${POSTGRES_MISSING}${postgresSearchDetail()}`);
    describe.skip(`${name} — ${POSTGRES_MISSING}`, () => fn(() => {
      throw new Error('unreachable: skipped');
    }));
  }
}
