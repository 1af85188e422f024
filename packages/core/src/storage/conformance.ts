/**
 * The `DocStore` conformance suite: the contract of `DocStore` (doc-store.ts), case by case.
 * Every store implementation runs all of these cases (see conformance-case.ts for the runner
 * pattern); a store that cannot be reopened (memory) reports the durability cases skipped:
 *
 *   import { docStoreConformance, conformanceSkipReason } from '@capsync/core/conformance'
 *
 * Hard promises checked here: appends are durable across reopening (with their client id
 * claims), positions never repeat, and a compaction never loses an update appended while it
 * runs (whatever the interleaving of the calls).
 */
import * as Y from 'yjs';
import { conformanceChecks, required, type ConformanceCase, type HarnessBase } from '../conformance/conformance-case.js';
import type { DocStore } from './doc-store.js';

export interface DocStoreHarness extends HarnessBase {
  /** A fresh, empty store. */
  create(): Promise<DocStore>;
  /**
   * Closes `store` and opens the same underlying storage again. Omit for stores that do not
   * outlive their process (memory), and say why in `absent.reopen`: the durability cases are
   * then reported skipped.
   */
  reopen?(store: DocStore): Promise<DocStore>;
}

export type DocStoreCase = ConformanceCase<DocStoreHarness>;

const { fail, equal, bytesEqual } = conformanceChecks('DocStore');

/** Applies stored updates to a fresh doc and returns its text "t". */
function textOf(updates: Uint8Array[]): string {
  const doc = new Y.Doc();
  for (const u of updates) Y.applyUpdate(doc, u);
  return doc.getText('t').toString();
}

/** A doc writer producing realistic incremental updates. */
function writer(): { doc: Y.Doc; edit(text: string): Uint8Array } {
  const doc = new Y.Doc();
  return {
    doc,
    edit(text: string) {
      let update: Uint8Array | null = null;
      const capture = (u: Uint8Array) => (update = u);
      doc.on('update', capture);
      doc.getText('t').insert(doc.getText('t').length, text);
      doc.off('update', capture);
      return update!;
    },
  };
}

async function withStore(h: DocStoreHarness, fn: (s: DocStore) => Promise<DocStore | void>): Promise<void> {
  let store = await h.create();
  try {
    store = (await fn(store)) ?? store;
  } finally {
    await store.close();
  }
}

export const docStoreConformance: DocStoreCase[] = [
  {
    name: 'an unknown document loads empty',
    run: (h) =>
      withStore(h, async (s) => {
        const doc = await s.load('nothing-here');
        equal(doc.updates.length, 0, 'updates');
        equal(doc.head, 0, 'head');
        equal(doc.logCount, 0, 'logCount');
        equal(doc.logBytes, 0, 'logBytes');
      }),
  },
  {
    name: 'appended updates load back byte-exact, in order',
    run: (h) =>
      withStore(h, async (s) => {
        const w = writer();
        const sent = [w.edit('a'), w.edit('b'), w.edit('c')];
        for (const u of sent) await s.append('doc', u);
        const doc = await s.load('doc');
        equal(doc.updates.length, 3, 'update count');
        sent.forEach((u, i) => bytesEqual(doc.updates[i]!, u, `update ${i}`));
        equal(textOf(doc.updates), 'abc', 'text');
      }),
  },
  {
    name: 'positions strictly increase and head is the last one',
    run: (h) =>
      withStore(h, async (s) => {
        const w = writer();
        let last = 0;
        for (let i = 0; i < 5; i++) {
          const r = await s.append('doc', w.edit(String(i)));
          if (!(r.position > last)) fail(`position ${r.position} not after ${last}`);
          equal(r.logCount, i + 1, 'logCount');
          last = r.position;
        }
        equal((await s.load('doc')).head, last, 'head');
      }),
  },
  {
    name: 'concurrent appends are stored in call order',
    run: (h) =>
      withStore(h, async (s) => {
        const w = writer();
        const sent = Array.from({ length: 200 }, (_, i) => w.edit(String.fromCharCode(97 + (i % 26))));
        const results = await Promise.all(sent.map((u) => s.append('doc', u)));
        for (let i = 1; i < results.length; i++) {
          if (!(results[i]!.position > results[i - 1]!.position)) fail('positions out of call order');
        }
        const doc = await s.load('doc');
        sent.forEach((u, i) => bytesEqual(doc.updates[i]!, u, `update ${i}`));
      }),
  },
  {
    name: 'documents are isolated, whatever their names',
    run: (h) =>
      withStore(h, async (s) => {
        const names = ['a', 'a/b', 'A', 'ünïcødé/文档', "quote'\"%_*", 'a b'];
        for (const [i, name] of names.entries()) {
          const w = writer();
          await s.append(name, w.edit(`doc${i}`));
        }
        for (const [i, name] of names.entries()) {
          equal(textOf((await s.load(name)).updates), `doc${i}`, `text of ${name}`);
        }
      }),
  },
  {
    name: 'logBytes counts the bytes of the log',
    run: (h) =>
      withStore(h, async (s) => {
        const w = writer();
        const a = w.edit('hello');
        const b = w.edit(' world');
        await s.append('doc', a);
        const r = await s.append('doc', b);
        equal(r.logBytes, a.byteLength + b.byteLength, 'append logBytes');
        equal((await s.load('doc')).logBytes, a.byteLength + b.byteLength, 'load logBytes');
      }),
  },
  {
    name: 'a large update round-trips',
    run: (h) =>
      withStore(h, async (s) => {
        const w = writer();
        const big = w.edit('x'.repeat(2 * 1024 * 1024));
        await s.append('doc', big);
        bytesEqual((await s.load('doc')).updates[0]!, big, 'big update');
      }),
  },
  {
    name: 'compact replaces entries up to `through` and keeps later ones',
    run: (h) =>
      withStore(h, async (s) => {
        const w = writer();
        await s.append('doc', w.edit('a'));
        const r2 = await s.append('doc', w.edit('b'));
        const snapshot = Y.encodeStateAsUpdate(w.doc);
        await s.append('doc', w.edit('c'));
        await s.compact('doc', snapshot, r2.position);
        const doc = await s.load('doc');
        equal(doc.updates.length, 2, 'snapshot + 1 entry');
        bytesEqual(doc.updates[0]!, snapshot, 'snapshot first');
        equal(doc.logCount, 1, 'logCount after compact');
        equal(textOf(doc.updates), 'abc', 'text after compact');
        const r4 = await s.append('doc', w.edit('d'));
        if (!(r4.position > r2.position)) fail('positions reused after compact');
        equal(textOf((await s.load('doc')).updates), 'abcd', 'text after append');
      }),
  },
  {
    name: 'a stale compaction is ignored',
    run: (h) =>
      withStore(h, async (s) => {
        const w = writer();
        const r1 = await s.append('doc', w.edit('a'));
        const old = Y.encodeStateAsUpdate(w.doc);
        const r2 = await s.append('doc', w.edit('b'));
        await s.compact('doc', Y.encodeStateAsUpdate(w.doc), r2.position);
        await s.compact('doc', old, r1.position);
        equal(textOf((await s.load('doc')).updates), 'ab', 'text');
      }),
  },
  {
    name: 'delete removes one document only',
    run: (h) =>
      withStore(h, async (s) => {
        const a = writer();
        const b = writer();
        await s.append('a', a.edit('A'));
        await s.compact('a', Y.encodeStateAsUpdate(a.doc), (await s.append('a', a.edit('A'))).position);
        await s.append('b', b.edit('B'));
        await s.delete('a');
        const gone = await s.load('a');
        equal(gone.updates.length, 0, 'deleted doc updates');
        equal(textOf((await s.load('b')).updates), 'B', 'other doc');
      }),
  },
  {
    name: 'delete raises the incarnation: the name loads empty with a new incarnation, and appends of the old one are refused',
    run: (h) =>
      withStore(h, async (s) => {
        const w = writer();
        equal((await s.load('doc')).incarnation, 0, 'incarnation of an unknown document');
        await s.append('doc', w.edit('old'), 0);
        const before = await s.load('doc');
        equal(before.incarnation, 0, 'incarnation before any delete');
        const next = await s.delete('doc');
        if (next === before.incarnation) fail(`delete returned the old incarnation ${next}`);
        const after = await s.load('doc');
        equal(after.incarnation, next, 'incarnation loaded after the delete');
        equal(after.updates.length, 0, 'updates after the delete');
        let refused = '';
        await s.append('doc', w.edit('stale'), before.incarnation).catch((err: { code?: string }) => (refused = err.code ?? 'no code'));
        equal(refused, 'document-deleted', 'code of an append for the old incarnation');
        equal((await s.load('doc')).updates.length, 0, 'updates after the refused append');
        const fresh = writer();
        const r = await s.append('doc', fresh.edit('new'), next);
        if (r.position <= before.head) fail(`a position of the new incarnation (${r.position}) is not above the old head ${before.head}`);
        equal(textOf((await s.load('doc')).updates), 'new', 'text of the new incarnation');
        equal((await s.load('other')).incarnation, 0, 'incarnation of another document');
        if ((await s.delete('doc')) <= next) fail('a second delete did not raise the incarnation');
      }),
  },
  {
    name: 'an append racing with a delete lands before it or is refused, never in the new incarnation',
    run: (h) =>
      withStore(h, async (s) => {
        for (let round = 0; round < 5; round++) {
          const name = `race-${round}`;
          const w = writer();
          await s.append(name, w.edit('a'), 0);
          // Called in every order around the delete, none awaited before the next is called.
          const early = s.append(name, w.edit('b'), 0).then(() => 'ok', (err: { code?: string }) => err.code);
          const deleted = s.delete(name);
          const late = s.append(name, w.edit('c'), 0).then(() => 'ok', (err: { code?: string }) => err.code);
          const [e, incarnation, l] = await Promise.all([early, deleted, late]);
          if (e !== 'ok' && e !== 'document-deleted') fail(`append before the delete: ${e}`);
          equal(String(l), 'document-deleted', 'append called after the delete, with the old incarnation');
          const loaded = await s.load(name);
          equal(loaded.incarnation, incarnation, 'incarnation after the race');
          equal(loaded.updates.length, 0, 'updates of the new incarnation after the race');
        }
      }),
  },
  {
    name: 'list names every stored document, not deleted ones',
    run: (h) =>
      withStore(h, async (s) => {
        const a = writer();
        const b = writer();
        equal((await s.list()).length, 0, 'documents in an empty store');
        await s.append('a', a.edit('A'));
        await s.compact('a', Y.encodeStateAsUpdate(a.doc), (await s.append('a', a.edit('A'))).position);
        await s.append('b/ü', b.edit('B'));
        await s.append('c', b.edit('C'));
        await s.delete('c');
        equal((await s.list()).sort().join(','), 'a,b/ü', 'listed documents');
      }),
  },
  {
    name: 'ping resolves on a working store',
    run: (h) => withStore(h, (s) => s.ping()),
  },
  {
    name: 'the first claim of a client id wins; others get it back as a conflict',
    run: (h) =>
      withStore(h, async (s) => {
        equal((await s.loadClientOwners('doc')).length, 0, 'owners of an unknown document');
        equal((await s.claimClients('doc', 'alice', [1, 2])).length, 0, 'conflicts of a first claim');
        equal((await s.claimClients('doc', 'alice', [2, 3])).length, 0, 'conflicts of a re-claim by the owner');
        const conflicts = await s.claimClients('doc', 'bob', [3, 4]);
        equal(conflicts.length, 1, 'conflicts of a claim of an owned id');
        equal(conflicts[0]!.clientId, 3, 'conflicting client id');
        equal(conflicts[0]!.owner, 'alice', 'owner of the conflicting id');
        const owners = new Map(await s.loadClientOwners('doc'));
        equal(owners.size, 4, 'owned ids');
        equal(owners.get(1), 'alice', 'owner of 1');
        equal(owners.get(3), 'alice', 'owner of 3 after a refused claim');
        equal(owners.get(4), 'bob', 'owner of 4');
        equal((await s.loadClientOwners('other')).length, 0, 'owners of another document');
        await s.claimClients('other', 'bob', [1]);
        equal(new Map(await s.loadClientOwners('other')).get(1), 'bob', 'the same id in another document');
        await s.claimClients('other', 'carol', [-2, -4294967297]);
        const negative = new Map(await s.loadClientOwners('other'));
        equal(negative.get(-2), 'carol', 'a negative id (a carried record) round-trips');
        equal(negative.get(-4294967297), 'carol', 'a negative id past 32 bits round-trips');
        await s.delete('doc');
        equal((await s.loadClientOwners('doc')).length, 0, 'owners after delete');
      }),
  },
  {
    name: 'a compaction never loses an update appended while it runs, wherever it falls among the appends',
    run: (h) =>
      withStore(h, async (s) => {
        // For each split k (the compaction covers the first k of n updates) and each place `at`
        // of the compact call among the remaining appends, called in one turn or a task apart.
        const n = 6;
        for (const spread of [false, true]) {
          for (let k = 1; k < n; k++) {
            for (let at = 0; at <= n - k; at++) {
              const name = `race-${spread ? 'spread' : 'turn'}-${k}-${at}`;
              const w = writer();
              const updates = Array.from({ length: n }, (_, i) => w.edit(String(i)));
              let through = 0;
              for (const u of updates.slice(0, k)) through = (await s.append(name, u)).position;
              const covered = new Y.Doc();
              for (const u of updates.slice(0, k)) Y.applyUpdate(covered, u);
              const snapshot = Y.encodeStateAsUpdate(covered);
              const calls: Promise<unknown>[] = [];
              const rest = updates.slice(k);
              for (let i = 0; i <= rest.length; i++) {
                if (i === at) calls.push(s.compact(name, snapshot, through));
                if (i < rest.length) calls.push(s.append(name, rest[i]!));
                if (spread) await new Promise((resolve) => setTimeout(resolve, 0));
              }
              await Promise.all(calls);
              const doc = await s.load(name);
              equal(textOf(doc.updates), '012345', `text of ${name}`);
              equal(doc.logCount, n - k, `log entries after the compaction of ${name}`);
            }
          }
        }
      }),
  },
  {
    name: 'client id claims survive reopening, also when made right before an append',
    needs: ['reopen'],
    run: async (h) => {
      const reopen = required(h, 'reopen').bind(h);
      await withStore(h, async (s) => {
        const w = writer();
        // Not awaited in between: the claim must be committed no later than the append.
        const claimed = s.claimClients('doc', 'alice', [w.doc.clientID]);
        await s.append('doc', w.edit('a'));
        await claimed;
        const s2 = await reopen(s);
        equal(new Map(await s2.loadClientOwners('doc')).get(w.doc.clientID), 'alice', 'owner after reopen');
        return s2;
      });
    },
  },
  {
    name: 'an incarnation survives reopening',
    needs: ['reopen'],
    run: (h) => {
      const reopen = required(h, 'reopen').bind(h);
      return withStore(h, async (s) => {
        const w = writer();
        await s.append('doc', w.edit('a'));
        const incarnation = await s.delete('doc');
        const s2 = await reopen(s);
        equal((await s2.load('doc')).incarnation, incarnation, 'incarnation after reopen');
        return s2;
      });
    },
  },
  {
    name: 'appends and compactions survive reopening',
    needs: ['reopen'],
    run: async (h) => {
      const reopen = required(h, 'reopen').bind(h);
      await withStore(h, async (s) => {
        const w = writer();
        await s.append('doc', w.edit('a'));
        const r = await s.append('doc', w.edit('b'));
        await s.compact('doc', Y.encodeStateAsUpdate(w.doc), r.position);
        const last = await s.append('doc', w.edit('c'));
        const s2 = await reopen(s);
        const doc = await s2.load('doc');
        equal(textOf(doc.updates), 'abc', 'text after reopen');
        const next = await s2.append('doc', w.edit('d'));
        if (!(next.position > last.position)) fail('positions reused after reopen');
        return s2;
      });
    },
  },
];
