/**
 * Runs the StorageAdapter conformance suite (`@capsync/client/conformance`) inside a real
 * Chromium page, against its real IndexedDB. Each adapter the harness creates has a prefix of
 * its own (its own databases: a fresh profile as far as the case can tell); a "reload" is a
 * new adapter with new connections on the same databases.
 */
import { conformanceSkipReason, type HarnessBase } from '@capsync/core/conformance';
import { IndexedDbStorage, type StorageAdapter } from '@capsync/client';
import { storageAdapterConformance, type StorageAdapterHarness } from '@capsync/client/conformance';

export interface StorageConformancePage {
  /** Runs the named case: null when it passed, else `{ skipped }` or `{ error }`. */
  run(name: string): Promise<null | { skipped: string } | { error: string }>;
}

declare global {
  interface Window {
    storageConformance: StorageConformancePage;
  }
}

let profiles = 0;
const prefixes = new Map<StorageAdapter, string>();
const adapter = (prefix: string) => {
  const a = new IndexedDbStorage({ prefix });
  prefixes.set(a, prefix);
  return a;
};
const harness: StorageAdapterHarness & HarnessBase = {
  create: async () => adapter(`conformance-${++profiles}:`),
  reload: async (a) => adapter(prefixes.get(a)!),
};

window.storageConformance = {
  async run(name) {
    const c = storageAdapterConformance.find((x) => x.name === name);
    if (!c) return { error: `no case named "${name}"` };
    const skip = conformanceSkipReason(c, harness);
    if (skip) return { skipped: skip };
    try {
      await c.run(harness);
      return null;
    } catch (err) {
      return { error: (err as Error).stack ?? String(err) };
    }
  },
};
