import { describe, expect, it } from 'vitest';
import { DocIncarnation } from '../src/replica/doc-incarnation.js';
import type { LocalReplica } from '../src/replica/local-replica.js';
import { MemoryStorage } from '../src/storage/memory-storage.js';

/** A DocIncarnation over a replica that learned `learned` (undefined: none); counts erases. */
function incarnationOf(learned: number | undefined) {
  const state = { erased: 0, stopped: 0 };
  const replica = {
    incarnation: learned,
    setIncarnation(n: number) {
      replica.incarnation = n;
    },
    async erase() {
      state.erased++;
    },
  };
  const host = {
    replica: replica as unknown as LocalReplica,
    holdsContent: () => true,
    stopSaving: () => void state.stopped++,
    error: () => {},
  };
  return { di: new DocIncarnation(host, 'clear', new MemoryStorage(), 'notes', 'notes'), state, replica };
}

describe("DocIncarnation: erasing on 'document-deleted' only when sure", () => {
  it('erases a replica whose learned incarnation is older than the one the close reason names', async () => {
    const { di, state } = incarnationOf(0);
    di.deleted('document-deleted: [incarnation 1] document "notes" was deleted');
    await di.cleared;
    expect(state).toEqual({ erased: 1, stopped: 1 });
  });

  it('never erases a replica that learned no incarnation (content written offline only)', () => {
    const { di, state } = incarnationOf(undefined);
    di.deleted('document-deleted: [incarnation 1] document "notes" was deleted');
    expect(di.cleared).toBeNull();
    expect(state).toEqual({ erased: 0, stopped: 0 });
  });

  it('keeps a replica of an incarnation as new as, or newer than, the relay\'s, or when the reason names none', () => {
    for (const [learned, reason] of [
      [1, 'document-deleted: [incarnation 1] x'],
      [3, 'document-deleted: [incarnation 1] x'],
      [0, 'document-deleted: document "notes" was deleted'],
    ] as const) {
      const { di, state } = incarnationOf(learned);
      di.deleted(reason);
      expect(di.cleared).toBeNull();
      expect(state.erased).toBe(0);
    }
  });

  it('stores the incarnation the relay announces, also an older one (a relay restarted on memory storage)', () => {
    const { di, replica } = incarnationOf(3);
    di.learned(0);
    expect(replica.incarnation).toBe(0);
  });
});
