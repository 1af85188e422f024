/**
 * Seeded randomized convergence of @capsync/client replicas through a real relay process.
 *
 * Per seed: CLIENTS devices (memory and fake-indexeddb storage, each its own client instance)
 * open one document and take STEPS random steps: text inserts/deletes/formatting, Y.Map
 * sets/deletes and Y.Array inserts/deletes (nested maps, arrays and texts too, edited in
 * place), single clients going offline and back, relay crashes (SIGKILL) and graceful restarts
 * (SIGTERM) on the same port and data directory, clients closed and reopened, and client
 * crashes: a client dies without close() and the document is reopened on the same IndexedDB,
 * which must give back every edit that was saved locally (and, if the client was offline, a
 * non-zero pending count) and deliver it to everyone. Now and then an ack audit: a client
 * flushes to the relay, and every client with nothing pending must find its own clock in the
 * relay's state vector (acknowledged means durable, even across relay crashes).
 *
 * Then the network heals (relay up, everyone online, flush to the relay, whenSynced) and every
 * replica and the relay's state (HTTP API) must be equal: state vectors, delete sets, content
 * (support/replicas.ts); pending is 0, status 'synced', every crash marker is everywhere once,
 * and no handle reported an error. Finally, with the clients offline, the relay is killed
 * (SIGKILL) and restarted: its stored state must still equal the replicas.
 *
 * Knobs: SEED=<n> (replay that seed), CONVERGENCE_SEEDS (how many seeds, consecutive from
 * SEED or a random base; default 3), CONVERGENCE_STEPS (default 150), CONVERGENCE_CLIENTS
 * (default 5), CONVERGENCE_DEBUG=1 (log error events as they happen).
 * For example: CONVERGENCE_SEEDS=1000 npx vitest run client/convergence.test.ts
 *
 * The seed fixes the schedule (which step, which client, relay restarts, crashes); each edit
 * draws from its own seeded generator, but what it does depends on the replica's state, which
 * depends on network timing, so a replay is close to, not exactly, the failing run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { docToJSON } from '@capsync/core';
import { nextTurn, TestDevice, whenStatus, type TestSession } from '../support/client-fixture.js';
import { contains, docFromUpdate, expectConverged, stableStringify, type Schema } from '../support/replicas.js';
import { startRelay } from '../support/relay-fixture.js';
import { RestartableRelay } from '../support/restartable-relay.js';
import { SeededRandom, testSeed } from '../support/seeded-random.js';

const SEEDS = Number(process.env['CONVERGENCE_SEEDS'] ?? (process.env['SEED'] ? 1 : 3));
const STEPS = Number(process.env['CONVERGENCE_STEPS'] ?? 150);
const CLIENTS = Math.max(2, Number(process.env['CONVERGENCE_CLIENTS'] ?? 5));
const HEAL_TIMEOUT_MS = 20_000;

const SCHEMA: Schema = { t: 'text', m: 'map', a: 'array', crash: 'array' };

const baseSeed = testSeed('convergence');
const seeds = Array.from({ length: SEEDS }, (_, i) => (baseSeed + i) >>> 0);

// ---- random edits ----

const KEYS = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5'];
const MAX_DEPTH = 3;
type Container = Y.Text | Y.Map<unknown> | Y.Array<unknown>;

/** One transaction of 1–3 random operations on the document's shared types. */
function randomEdit(doc: Y.Doc, rnd: SeededRandom, tag: string): void {
  doc.transact(() => {
    const n = rnd.int(1, 3);
    for (let i = 0; i < n; i++) editOnce(doc, rnd, tag);
  });
}

function editOnce(doc: Y.Doc, rnd: SeededRandom, tag: string): void {
  let target: { type: Container; depth: number };
  const nested = nestedTypes(doc);
  if (nested.length > 0 && rnd.next() < 0.45) target = rnd.pick(nested);
  else target = { type: rnd.pick([doc.getText('t'), doc.getMap('m'), doc.getArray('a')] as Container[]), depth: 0 };
  const { type, depth } = target;
  if (type instanceof Y.Text) textEdit(type, rnd, tag);
  else if (type instanceof Y.Map) mapEdit(type, rnd, tag, depth);
  else arrayEdit(type, rnd, tag, depth);
}

/** Every shared type nested in the root map and array, with its depth. */
function nestedTypes(doc: Y.Doc): { type: Container; depth: number }[] {
  const out: { type: Container; depth: number }[] = [];
  const visit = (values: Iterable<unknown>, depth: number) => {
    for (const v of values) {
      if (v instanceof Y.Text) out.push({ type: v, depth });
      else if (v instanceof Y.Map) {
        out.push({ type: v, depth });
        visit(v.values(), depth + 1);
      } else if (v instanceof Y.Array) {
        out.push({ type: v, depth });
        visit(v.toArray(), depth + 1);
      }
    }
  };
  visit(doc.getMap('m').values(), 1);
  visit(doc.getArray('a').toArray(), 1);
  return out;
}

function randomString(rnd: SeededRandom, tag: string): string {
  const chars = 'abcdefghij ';
  let s = tag;
  for (let i = rnd.int(0, 5); i > 0; i--) s += chars[rnd.int(0, chars.length - 1)];
  return s;
}

function randomAttributes(rnd: SeededRandom): Record<string, unknown> {
  return rnd.pick([{ bold: true }, { italic: true }, { color: rnd.pick(['red', 'blue']) }, { bold: null }]);
}

function textEdit(text: Y.Text, rnd: SeededRandom, tag: string): void {
  const len = text.length;
  const r = rnd.next();
  if (r < 0.55 || len === 0) {
    const at = rnd.int(0, len);
    if (rnd.next() < 0.2) text.insert(at, randomString(rnd, tag), randomAttributes(rnd));
    else text.insert(at, randomString(rnd, tag));
  } else if (r < 0.88) {
    const at = rnd.int(0, len - 1);
    text.delete(at, rnd.int(1, Math.min(6, len - at)));
  } else {
    const at = rnd.int(0, len - 1);
    text.format(at, rnd.int(1, Math.min(8, len - at)), randomAttributes(rnd));
  }
}

/** Deletes and overwrites (concurrent sets of one key delete all but one) hit nested types too. */
function mapEdit(map: Y.Map<unknown>, rnd: SeededRandom, tag: string, depth: number): void {
  const keys = Array.from(map.keys());
  if (keys.length > 0 && rnd.next() < 0.25) map.delete(rnd.pick(keys));
  else map.set(rnd.pick(KEYS), randomValue(rnd, tag, depth));
}

function arrayEdit(array: Y.Array<unknown>, rnd: SeededRandom, tag: string, depth: number): void {
  const len = array.length;
  if (len > 0 && rnd.next() < 0.35) {
    const at = rnd.int(0, len - 1);
    array.delete(at, rnd.int(1, Math.min(3, len - at)));
  } else {
    const values = Array.from({ length: rnd.int(1, 3) }, () => randomValue(rnd, tag, depth));
    array.insert(rnd.int(0, len), values);
  }
}

/** A primitive, or (above the depth limit) a new nested Y.Text / Y.Map / Y.Array with content. */
function randomValue(rnd: SeededRandom, tag: string, depth: number): unknown {
  if (depth < MAX_DEPTH && rnd.next() < 0.35) {
    const kind = rnd.int(0, 2);
    if (kind === 0) return new Y.Text(randomString(rnd, tag));
    if (kind === 1) {
      const m = new Y.Map<unknown>();
      m.set(rnd.pick(KEYS), randomString(rnd, tag));
      return m;
    }
    return Y.Array.from([randomString(rnd, tag), rnd.int(0, 99)]);
  }
  switch (rnd.int(0, 5)) {
    case 0:
      return rnd.int(-1000, 1000);
    case 1:
      return randomString(rnd, tag);
    case 2:
      return rnd.next() < 0.5;
    case 3:
      return null;
    case 4:
      return { tag, n: rnd.int(0, 9), list: [1, 'two'] };
    default:
      return rnd.bytes(rnd.int(0, 4));
  }
}

// ---- the run ----

interface Peer {
  device: TestDevice;
  session: TestSession;
  /** The test's intent: false after disconnect(), until connect(). */
  online: boolean;
}

interface RunStats {
  edits: number;
  relayKills: number;
  relayStops: number;
  crashes: number;
  reopens: number;
  disconnects: number;
  /** Mid-run checks (per client) that acknowledged updates are on the relay. */
  audits: number;
  /** Milliseconds spent starting and stopping the relay process, and healing at the end. */
  relayMs: number;
  healMs: number;
}

describe('capsync clients converge through disconnects, relay restarts and client crashes', () => {
  let relay: RestartableRelay;
  const started = Date.now();
  let stepsRun = 0;

  beforeAll(async () => {
    relay = await RestartableRelay.start(['--compact-updates', '40']);
  });
  afterAll(async () => {
    await relay?.dispose();
    console.log(`[convergence] ${seeds.length} seed(s) × ${STEPS} steps, ${CLIENTS} clients: ${stepsRun} steps in ${Date.now() - started} ms, ${relay?.starts} relay starts`);
  });

  it.each(seeds)(
    'seed %i',
    async (seed) => {
      console.log(`[convergence] seed=${seed} steps=${STEPS} clients=${CLIENTS} (replay: SEED=${seed} npx vitest run client/convergence.test.ts)`);
      const rnd = new SeededRandom(seed);
      const docName = `convergence-${seed}`;
      const stats: RunStats = { edits: 0, relayKills: 0, relayStops: 0, crashes: 0, reopens: 0, disconnects: 0, audits: 0, relayMs: 0, healMs: 0 };
      if (!relay.running) await relay.start();

      /** Every 'error' event of every handle, for the failure message and the final check. */
      const errors: string[] = [];
      function watchErrors(p: Peer): void {
        const label = p.device.label;
        p.session.handle.on('error', (err) => {
          errors.push(`${label}: ${err.code}: ${err.message}`);
          if (process.env['CONVERGENCE_DEBUG']) console.log(`[convergence] ${label} error ${err.code}: ${err.message}`);
        });
      }
      const peers: Peer[] = [];
      for (let i = 0; i < CLIENTS; i++) {
        // Both kinds always present; the rest random.
        const kind = i === 0 ? 'indexeddb' : i === 1 ? 'memory' : rnd.pick(['indexeddb', 'memory'] as const);
        const device = new TestDevice(relay.url, kind, `c${i}-${kind === 'memory' ? 'mem' : 'idb'}`, {
          localWriteDelayMs: rnd.int(0, 30),
          compactAfterRows: rnd.int(5, 60),
          gc: rnd.next() < 0.8,
        });
        peers.push({ device, session: await device.open(docName), online: true });
        watchErrors(peers[peers.length - 1]!);
      }
      const crashMarkers: string[] = [];
      // Edits read the replica (lengths, keys), which depends on timing: their own generators keep the schedule replayable.
      const editRandom = () => new SeededRandom(rnd.int(0, 0x7fffffff));
      const tagOf = (p: Peer) => String.fromCharCode(65 + peers.indexOf(p));
      const idbPeers = () => peers.filter((p) => p.device.kind === 'indexeddb');

      try {
        for (let step = 0; step < STEPS; step++) {
          stepsRun++;
          const r = rnd.next();
          if (!relay.running && rnd.next() < 0.1) {
            const t = Date.now();
            await relay.start(['--compact-updates', String(rnd.int(5, 200)), '--idle-timeout-ms', String(rnd.pick([50, 30_000]))]);
            stats.relayMs += Date.now() - t;
          } else if (r < 0.6) {
            const p = rnd.pick(peers);
            randomEdit(p.session.handle.doc, editRandom(), tagOf(p));
            stats.edits++;
          } else if (r < 0.72) {
            for (let i = rnd.int(1, 4); i > 0; i--) await nextTurn();
          } else if (r < 0.78) {
            const online = peers.filter((p) => p.online);
            if (online.length > 0) {
              const p = rnd.pick(online);
              p.session.handle.disconnect();
              p.online = false;
              stats.disconnects++;
            }
          } else if (r < 0.86) {
            const offline = peers.filter((p) => !p.online);
            if (offline.length > 0) {
              const p = rnd.pick(offline);
              p.session.handle.connect();
              p.online = true;
            }
          } else if (r < 0.89) {
            if (relay.running) {
              const signal = rnd.next() < 0.7 ? 'SIGKILL' : 'SIGTERM';
              const t = Date.now();
              await relay.stop(signal);
              stats.relayMs += Date.now() - t;
              if (signal === 'SIGKILL') stats.relayKills++;
              else stats.relayStops++;
            }
          } else if (r < 0.915) {
            await crashAndReopen(rnd.pick(idbPeers()));
          } else if (r < 0.935) {
            // Graceful close and reopen on the same device (memory storage survives within it).
            const p = rnd.pick(peers);
            await p.session.close();
            p.session = await p.device.open(docName, { connect: p.online });
            watchErrors(p);
            stats.reopens++;
          } else if (r < 0.965) {
            await audit();
          } else {
            const p = rnd.pick(idbPeers());
            await p.session.handle.flush({ durability: 'local', timeoutMs: 5_000 });
          }
          if (rnd.next() < 0.3) await nextTurn();
        }

        const healStart = Date.now();
        await heal().catch((err: Error) => {
          throw new Error(`${err.message}\nerror events:\n  ${errors.join('\n  ') || '(none)'}`, { cause: err });
        });
        stats.healMs = Date.now() - healStart;
        // Restarts and crashes are not errors: nothing was refused, nothing failed to store.
        expect(errors, 'error events').toEqual([]);
        const replicas = peers.map((p) => ({ name: p.device.label, update: Y.encodeStateAsUpdate(p.session.handle.doc) }));
        for (const p of peers) {
          expect(p.session.handle.pending, `pending of ${p.device.label}`).toBe(0);
          expect(p.session.handle.status, `status of ${p.device.label}`).toBe('synced');
          const crashArray = p.session.handle.doc.getArray<string>('crash').toArray();
          expect([...crashArray].sort(), `crash markers at ${p.device.label}`).toEqual([...crashMarkers].sort());
        }
        const relayUpdate = await relay.docUpdate(docName);
        expectConverged([...replicas, { name: 'relay', update: relayUpdate }], SCHEMA);
        expect(stableStringify(await relay.docJson(docName)), 'relay JSON view').toBe(stableStringify(docToJSON(docFromUpdate(relayUpdate))));

        // Everything is acknowledged, so it is durable: a relay crash now loses none of it. The
        // clients stay offline, so what the relay has after the restart came from its storage.
        for (const p of peers) p.session.handle.disconnect();
        await relay.stop('SIGKILL');
        await relay.start();
        expectConverged([...replicas, { name: 'relay after SIGKILL', update: await relay.docUpdate(docName) }], SCHEMA);
        console.log(
          `[convergence] seed=${seed} ok: ${stats.edits} edits, ${stats.disconnects} disconnects, ${stats.relayKills} relay kills, ${stats.relayStops} graceful relay stops, ${stats.crashes} client crashes, ${stats.reopens} reopens, ${stats.audits} ack audits; doc ${relayUpdate.byteLength} bytes; relay stop/start ${stats.relayMs} ms, heal ${stats.healMs} ms`,
        );
      } finally {
        await Promise.all(peers.map((p) => p.session.close().catch(() => {})));
      }

      /**
       * The client dies without close() after saving locally; its document reopens from the
       * same IndexedDB in a new client instance. What was saved must be there before any
       * network, and (if the client was offline, so nothing was acknowledged) still pending.
       */
      async function crashAndReopen(p: Peer): Promise<void> {
        const handle = p.session.handle;
        if (p.online && rnd.next() < 0.5) {
          handle.disconnect();
          p.online = false;
        }
        const unacknowledged = !p.online;
        const marker = `${p.device.label}#${stats.crashes}`;
        handle.doc.getArray<string>('crash').push([marker]);
        randomEdit(handle.doc, editRandom(), tagOf(p));
        const saved = Y.encodeStateAsUpdate(handle.doc);
        await handle.flush({ durability: 'local', timeoutMs: 5_000 });
        // More edits that may or may not reach storage or the relay before the crash.
        for (let i = rnd.int(0, 3); i > 0; i--) randomEdit(handle.doc, editRandom(), tagOf(p));
        if (rnd.next() < 0.5) await nextTurn();
        p.session.crash();
        crashMarkers.push(marker);
        stats.crashes++;

        p.session = await p.device.open(docName, { connect: false });
        watchErrors(p);
        const reopened = p.session.handle;
        expect(reopened.doc.getArray<string>('crash').toArray(), `marker ${marker} after reopen`).toContain(marker);
        expect(contains(reopened.doc, saved, SCHEMA), `${p.device.label}: everything saved before the crash is back`).toBe(true);
        if (unacknowledged) expect(reopened.pending, `${p.device.label}: pending after reopen`).toBeGreaterThan(0);
        if (rnd.next() < 0.7) {
          reopened.connect();
          p.online = true;
        } else p.online = false;
      }

      /**
       * Mid-run check of the acks: one online client flushes to the relay; then it, and any
       * client with nothing pending, had every update it made acknowledged, hence durable on the
       * relay (even across relay crashes), so the relay's state vector (read over HTTP) covers
       * the client's own clock. (Content a client got from others is not checked: the relay may
       * lose what it had not acknowledged yet.)
       */
      async function audit(): Promise<void> {
        if (!relay.running) return;
        const online = peers.filter((p) => p.online);
        if (online.length > 0) await rnd.pick(online).session.handle.flush({ durability: 'relay', timeoutMs: HEAL_TIMEOUT_MS });
        const claims = peers
          .filter((p) => p.session.handle.pending === 0)
          .map((p) => ({ label: p.device.label, doc: p.session.handle.doc }))
          .map(({ label, doc }) => ({ label, client: doc.clientID, clock: Y.getState(doc.store, doc.clientID) }));
        const relayState = Y.decodeStateVector(Y.encodeStateVectorFromUpdate(await relay.docUpdate(docName)));
        for (const c of claims) {
          expect(relayState.get(c.client) ?? 0, `${c.label} has nothing pending, so the relay has all it wrote`).toBeGreaterThanOrEqual(c.clock);
        }
        stats.audits += claims.length;
      }

      /** Relay up, everyone online, every local update durable on the relay, everyone caught up. */
      async function heal(): Promise<void> {
        if (!relay.running) await relay.start();
        for (const p of peers) {
          if (!p.online) {
            p.session.handle.connect();
            p.online = true;
          }
        }
        await Promise.all(peers.map((p) => whenStatus(p.session.handle, 'synced', HEAL_TIMEOUT_MS)));
        await Promise.all(peers.map((p) => p.session.handle.flush({ durability: 'relay', timeoutMs: HEAL_TIMEOUT_MS })));
        await Promise.all(peers.map((p) => p.session.handle.whenSynced({ timeoutMs: HEAL_TIMEOUT_MS })));
      }
    },
    Math.max(60_000, STEPS * 400),
  );
});

describe('the replica check itself', () => {
  const fork = (doc: Y.Doc) => docFromUpdate(Y.encodeStateAsUpdate(doc));
  const replicas = (...docs: Y.Doc[]) => docs.map((d, i) => ({ name: `r${i}`, update: Y.encodeStateAsUpdate(d) }));

  it('accepts equal replicas, however their updates were produced', () => {
    const a = new Y.Doc();
    a.getText('t').insert(0, 'hello', { bold: true });
    a.getMap('m').set('k', new Y.Array());
    const b = fork(a);
    const c = new Y.Doc();
    Y.applyUpdate(c, Y.mergeUpdates([Y.encodeStateAsUpdate(b), Y.encodeStateAsUpdate(a)]));
    expectConverged(replicas(a, b, c), SCHEMA);
  });

  it('detects a missing insert, a delete that only one replica has (same state vector), and a formatting difference', () => {
    const base = new Y.Doc();
    base.getText('t').insert(0, 'abc');
    base.getArray('a').insert(0, [new Y.Map()]);

    const ahead = fork(base);
    ahead.getArray('a').push([1]);
    expect(() => expectConverged(replicas(base, ahead), SCHEMA)).toThrow();

    const deleted = fork(base);
    deleted.getText('t').delete(1, 1);
    expect(Y.encodeStateVector(deleted)).toEqual(Y.encodeStateVector(base));
    expect(() => expectConverged(replicas(base, deleted), SCHEMA)).toThrow(/delete set/);

    const formatted = fork(base);
    formatted.getText('t').format(0, 1, { bold: true });
    expect(() => expectConverged(replicas(base, formatted), SCHEMA)).toThrow();
  });
});

describe('concurrent edits inside a deleted nested type', () => {
  /**
   * Regression (fixed in 8535542, found by the randomized test above): client b edits inside a
   * nested Y.Map while offline; client a deletes that map meanwhile. The relay garbage-collects
   * the deleted map (its item keeps ContentDeleted) and used to refuse b's edit as "forged or
   * corrupt update: parent … is not a shared type", closing b with 4422 on every reconnect, so
   * nothing b wrote ever synced again. Yjs integrates such an edit as a GC struct.
   */
  it('an edit inside a nested type that another client deleted is accepted and converges', async () => {
    const relay = await startRelay();
    const a = await new TestDevice(relay.url, 'memory', 'a').open('deleted-parent');
    const b = await new TestDevice(relay.url, 'memory', 'b').open('deleted-parent');
    const errors: string[] = [];
    b.handle.on('error', (err) => errors.push(err.message));
    try {
      a.handle.doc.getMap('m').set('x', new Y.Map<unknown>());
      await a.handle.flush({ timeoutMs: 5_000 });
      await b.handle.whenSynced({ timeoutMs: 5_000 });
      b.handle.disconnect();
      (b.handle.doc.getMap('m').get('x') as Y.Map<unknown>).set('k', 1);
      a.handle.doc.getMap('m').delete('x');
      await a.handle.flush({ timeoutMs: 5_000 });
      b.handle.connect();
      await b.handle.flush({ timeoutMs: 3_000 }).catch(() => {});
      expect(errors).toEqual([]);
      expect(b.handle.pending).toBe(0);
      await a.handle.whenSynced({ timeoutMs: 3_000 });
      expectConverged(
        [
          { name: 'a', update: Y.encodeStateAsUpdate(a.handle.doc) },
          { name: 'b', update: Y.encodeStateAsUpdate(b.handle.doc) },
        ],
        { m: 'map' },
      );
    } finally {
      await a.close();
      await b.close();
      await relay.dispose();
    }
  });
});
