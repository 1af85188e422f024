import { describe, it } from 'vitest';
import { onCI } from './browser.js';
import { etcdSearchDetail, findEtcd } from './etcd-cluster.js';

export const ETCD_MISSING = 'etcd tests skipped: etcd not found; install it with `apt-get install -y etcd-server` or set ETCD_PATH';

/**
 * `describe` for tests that need etcd. Without it: on CI the suite fails with a test that says
 * why; elsewhere it is skipped and the run says so plainly, once per file.
 */
export function describeEtcd(name: string, fn: (etcdPath: string) => void): void {
  const etcdPath = findEtcd();
  if (etcdPath) {
    describe(name, () => fn(etcdPath));
  } else if (onCI()) {
    describe(name, () => {
      it('needs etcd (CI is set, so a missing etcd fails the run)', () => {
        throw new Error(`etcd not found${etcdSearchDetail()}; install it with \`apt-get install -y etcd-server\` or set ETCD_PATH`);
      });
    });
  } else {
    console.warn(`${ETCD_MISSING}${etcdSearchDetail()}`);
    describe.skip(`${name} — ${ETCD_MISSING}`, () => fn(''));
  }
}
