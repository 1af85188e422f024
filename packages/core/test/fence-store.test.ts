import { describe } from 'vitest';
import { MemoryFenceStore } from '@capsync/core';
import { fenceStoreConformance } from '@capsync/core/conformance';
import { runConformance } from '../../../test/support/conformance.js';

describe('MemoryFenceStore conformance', () => {
  runConformance(fenceStoreConformance, {
    create: async () => new MemoryFenceStore(),
    absent: { reopen: 'a MemoryFenceStore lives in this process only' },
  });
});
