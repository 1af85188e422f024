import { defineConfig } from 'vite';

export default defineConfig({
  // Relative asset URLs, so the build works wherever it is served from (the relay's
  // --static-dir at /, or a sub-path behind a proxy).
  base: './',
  resolve: {
    // Workspace packages (@capsync/client, @capsync/core) export their TypeScript sources under
    // the `source` condition; bundling those means no package needs a build before this one.
    conditions: ['source', 'browser', 'module', 'import', 'default'],
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
  },
});
