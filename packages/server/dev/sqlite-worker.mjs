/**
 * The SQLite worker when the server runs from its TypeScript source (tests, development): the
 * package's `source` export of `./sqlite-worker` (package.json), which the store resolves
 * under `--conditions=source`. Node 20 does not carry a TypeScript loader into worker threads
 * (a `--import tsx` of the process does not apply there), so this worker registers tsx itself
 * and then runs the TypeScript worker. Not part of the published package: built, the export
 * resolves to dist/storage/sqlite-worker.js and no loader is involved.
 */
import { register } from 'tsx/esm/api';

register();
await import('../src/storage/sqlite-worker.ts');
