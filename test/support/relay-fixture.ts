import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRelay, type RelayHandle, type RelayOptions } from '@capsync/server';

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(prefix = 'capsync-test-'): { dir: string; remove(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

export interface TestRelay extends RelayHandle {
  dataDir: string;
  /** `${url}/${doc}` */
  docUrl(doc: string): string;
  /** Closes and removes its data directory. */
  dispose(): Promise<void>;
}

/** An in-process relay on port 0 with real SQLite in a temp directory (unless `storage` says otherwise). */
export async function startRelay(options: RelayOptions = {}): Promise<TestRelay> {
  const tmp = tempDir();
  const dataDir = options.dataDir ?? tmp.dir;
  const handle = await createRelay({ port: 0, storage: 'sqlite', ...options, dataDir });
  return {
    ...handle,
    dataDir,
    docUrl: (doc) => `${handle.url}/${doc}`,
    dispose: async () => {
      await handle.close();
      tmp.remove();
    },
  };
}
