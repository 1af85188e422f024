import { describe, it } from 'vitest';
import { MemoryDocStore } from '@capsync/core';
import { docStoreConformance } from '@capsync/core/conformance';

describe('MemoryDocStore conformance', () => {
  for (const c of docStoreConformance) {
    it(c.name, () => c.run({ create: async () => new MemoryDocStore() }));
  }
});
