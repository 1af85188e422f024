import { describe } from 'vitest';
import { MemoryDocStore } from '@capsync/core';
import { docStoreConformance } from '@capsync/core/conformance';
import { runConformance } from '../../../test/support/conformance.js';

describe('MemoryDocStore conformance', () => {
  runConformance(docStoreConformance, {
    create: async () => new MemoryDocStore(),
    absent: { reopen: 'a MemoryDocStore keeps nothing once closed (storage: memory relays lose their documents on restart, by design)' },
  });
});
