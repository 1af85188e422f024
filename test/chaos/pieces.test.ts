/**
 * The chaos harness's parts, checked on their own: the fault proxy's modes and delays, the
 * schedule's determinism and shape, the checker (it must catch divergence and lost edits),
 * and the trace replay (the reference replay reaches endContent; the network replay through
 * one relay, with a crash in the middle, reaches its expected text).
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { TestDevice, type TestSession } from '../support/client-fixture.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { startRelay } from '../support/relay-fixture.js';
import { waitForEvent } from '../support/wait.js';
import { compareReplicas, editIdOf, missingEdits, type Schema } from './checker.js';
import { POSTGRES_TOPOLOGY, TOPOLOGY } from './cluster.js';
import { allLinks, generateSchedule, type Step } from './schedule.js';
import { loadTrace, referenceText, TRACE_TEXT, TraceReplay } from './trace.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

/** A TCP server that records what each connection sent and lets the test write back. */
async function sink(): Promise<{ port: number; received: () => string; sockets: net.Socket[]; events: EventEmitterLike }> {
  const sockets: net.Socket[] = [];
  let data = '';
  const events = new (await import('node:events')).EventEmitter();
  const server = net.createServer((s) => {
    sockets.push(s);
    s.on('error', () => {});
    s.on('data', (d) => {
      data += d.toString();
      events.emit('change');
    });
    s.on('end', () => events.emit('change'));
    s.on('close', () => events.emit('change'));
    events.emit('change');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as net.AddressInfo).port, received: () => data, sockets, events };
}
type EventEmitterLike = import('node:events').EventEmitter;

async function connect(port: number): Promise<{ socket: net.Socket; received: () => string; events: EventEmitterLike; closed: () => boolean }> {
  const events = new (await import('node:events')).EventEmitter();
  const socket = net.connect({ port, host: '127.0.0.1' });
  let data = '';
  let closed = false;
  socket.on('error', () => {});
  socket.on('data', (d) => {
    data += d.toString();
    events.emit('change');
  });
  socket.on('close', () => {
    closed = true;
    events.emit('change');
  });
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  cleanups.push(() => socket.destroy());
  return { socket, received: () => data, events, closed: () => closed };
}

async function proxyTo(port: number, options: Parameters<typeof FaultProxy.start>[1] = {}): Promise<FaultProxy> {
  const p = await FaultProxy.start(port, options);
  cleanups.push(() => p.close());
  return p;
}

describe('fault proxy', () => {
  it('passes both ways, holds both ways and delivers what it held in order on pass', async () => {
    const server = await sink();
    const proxy = await proxyTo(server.port);
    const c = await connect(proxy.port);
    c.socket.write('a');
    await waitForEvent(server.events, 'change', () => server.received() === 'a', 'a to pass');
    server.sockets[0]!.write('x');
    await waitForEvent(c.events, 'change', () => c.received() === 'x', 'x to pass back');
    proxy.setMode('hold');
    c.socket.write('b');
    server.sockets[0]!.write('y');
    const conn = proxy.connections[0]!;
    await waitForEvent(proxy, 'read', () => conn.chunksUp === 2 && conn.chunksDown === 2, 'the proxy to read both chunks');
    expect(server.received()).toBe('a');
    expect(c.received()).toBe('x');
    c.socket.write('c');
    proxy.setMode('pass');
    await waitForEvent(server.events, 'change', () => server.received() === 'abc', 'held bytes to arrive in order');
    await waitForEvent(c.events, 'change', () => c.received() === 'xy', 'held bytes to arrive back');
    expect(c.closed()).toBe(false);
  });

  it('one-way modes let bytes through in one direction only', async () => {
    const server = await sink();
    const proxy = await proxyTo(server.port);
    const c = await connect(proxy.port);
    await waitForEvent(server.events, 'change', () => server.sockets.length === 1, 'the upstream connection');
    proxy.setMode('one-way-up');
    c.socket.write('up1');
    server.sockets[0]!.write('down1');
    await waitForEvent(server.events, 'change', () => server.received() === 'up1', 'up to flow');
    await waitForEvent(proxy, 'read', () => proxy.connections[0]!.chunksDown === 1, 'the proxy to read down1');
    expect(c.received()).toBe('');
    proxy.setMode('one-way-down');
    // What was held downwards flows now; the upward direction is held.
    await waitForEvent(c.events, 'change', () => c.received() === 'down1', 'held down bytes to flow');
    c.socket.write('up2');
    await waitForEvent(proxy, 'read', () => proxy.connections[0]!.chunksUp === 2, 'the proxy to read up2');
    server.sockets[0]!.write('down2');
    await waitForEvent(c.events, 'change', () => c.received() === 'down1down2', 'down to flow');
    expect(server.received()).toBe('up1');
    proxy.setMode('pass');
    await waitForEvent(server.events, 'change', () => server.received() === 'up1up2', 'held up bytes to flow on pass');
  });

  it('reset destroys connections (and new ones), drop ends them; setTarget moves new connections', async () => {
    const server = await sink();
    const other = await sink();
    const proxy = await proxyTo(server.port);
    const c1 = await connect(proxy.port);
    proxy.setMode('reset');
    await waitForEvent(c1.events, 'change', () => c1.closed(), 'reset to close the connection');
    const c2 = net.connect({ port: proxy.port, host: '127.0.0.1' });
    const c2err = new Promise<string>((resolve) => c2.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error')).on('close', () => resolve('closed')));
    expect(['ECONNRESET', 'closed']).toContain(await c2err);
    proxy.setMode('pass');
    proxy.setTarget(other.port);
    const c3 = await connect(proxy.port);
    c3.socket.write('moved');
    await waitForEvent(other.events, 'change', () => other.received() === 'moved', 'the new connection to reach the new target');
    proxy.setMode('drop');
    await waitForEvent(c3.events, 'change', () => c3.closed(), 'drop to end the connection');
  });

  it('delays each chunk, keeps order within a connection, and reorders across connections', async () => {
    const server = await sink();
    // Seeded jitter, in the order chunks are read: A1 and A2 get long delays, B1 a short one.
    const draws = [0.9, 0.9, 0];
    const proxy = await proxyTo(server.port, { random: () => draws.shift() ?? 0 });
    proxy.setDelay({ ms: 30, jitterMs: 100 });
    const a = await connect(proxy.port);
    const b = await connect(proxy.port);
    await waitForEvent(server.events, 'change', () => server.sockets.length === 2, 'both upstream connections');
    const t0 = performance.now();
    const [ca, cb] = [proxy.connections[0]!, proxy.connections[1]!];
    a.socket.write('A1');
    await waitForEvent(proxy, 'read', () => ca.chunksUp === 1, 'A1 read');
    a.socket.write('A2');
    await waitForEvent(proxy, 'read', () => ca.chunksUp === 2, 'A2 read');
    b.socket.write('B1');
    await waitForEvent(proxy, 'read', () => cb.chunksUp === 1, 'B1 read');
    expect(server.received()).toBe('');
    await waitForEvent(server.events, 'change', () => server.received().length === 6, 'all chunks', 5_000);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(30);
    const got = server.received();
    // A's chunks stay in order; B's short-delayed chunk overtakes them.
    expect(got.indexOf('A1')).toBeLessThan(got.indexOf('A2'));
    expect(got.indexOf('B1')).toBeLessThan(got.indexOf('A1'));
  });
});

describe('nemesis schedule', () => {
  const opts = { crashable: TOPOLOGY.clients.map((c) => c.name) };

  it('is a pure function of the seed', () => {
    const a = generateSchedule(42, 10_000, TOPOLOGY, opts);
    const b = generateSchedule(42, 10_000, TOPOLOGY, opts);
    expect(JSON.stringify(b)).toBe(JSON.stringify(a));
    const c = generateSchedule(43, 10_000, TOPOLOGY, opts);
    expect(JSON.stringify(c.steps)).not.toBe(JSON.stringify(a.steps));
  });

  it('ends every fault (by its end step or a heal), ends with the final heal, and never kills a relay twice at once', () => {
    const kinds = new Set<string>();
    for (let seed = 1; seed <= 300; seed++) {
      const s = generateSchedule(seed, 10_000, TOPOLOGY, opts);
      const open = new Map<number, Step>();
      const down = new Set<number>();
      const crashed = new Set<string>();
      let last = 0;
      for (const step of s.steps) {
        expect(step.at).toBeGreaterThanOrEqual(last);
        last = step.at;
        if (step.op === 'heal') {
          // The heal ends what is still on.
          open.clear();
          down.clear();
          crashed.clear();
          expect(step.final).toBe(step === s.steps[s.steps.length - 1]);
          continue;
        }
        const f = step.fault;
        kinds.add(f.type === 'partition' ? `partition:${f.kind}` : f.type);
        if (step.op === 'start') {
          open.set(step.id, step);
          if (f.type === 'kill') {
            expect(down.has(f.relay)).toBe(false);
            down.add(f.relay);
            expect(down.size).toBeLessThan(TOPOLOGY.relays.length);
          }
          if (f.type === 'crash') {
            expect(crashed.has(f.client)).toBe(false);
            crashed.add(f.client);
          }
        } else {
          expect(open.delete(step.id)).toBe(true);
          if (f.type === 'kill') down.delete(f.relay);
          if (f.type === 'crash') crashed.delete(f.client);
        }
      }
      expect(open.size).toBe(0);
      expect(s.counts.heals).toBeGreaterThan(0);
      const lastStep = s.steps[s.steps.length - 1]!;
      expect(lastStep.op === 'heal' && lastStep.final).toBe(true);
    }
    expect([...kinds].sort()).toEqual(
      ['crash', 'delay', 'kill', 'partition:client', 'partition:clients-of', 'partition:minority', 'partition:relays', 'partition:ring'].sort(),
    );
  });

  it('a ring is one-way on every peer link', () => {
    for (let seed = 1; seed < 500; seed++) {
      const ring = generateSchedule(seed, 10_000, TOPOLOGY, opts).steps.find((s) => s.op === 'start' && s.fault.type === 'partition' && s.fault.kind === 'ring');
      if (!ring || ring.op !== 'start' || ring.fault.type !== 'partition') continue;
      expect(ring.fault.cuts).toHaveLength(6);
      expect(new Set(ring.fault.cuts.map((c) => c.link)).size).toBe(6);
      expect(ring.fault.cuts.every((c) => c.mode.startsWith('one-way'))).toBe(true);
      return;
    }
    throw new Error('no ring partition in 500 seeds');
  });

  it('postgres topology: database partitions and outages instead of peer links, one outage at a time, short; a pure function of the seed', () => {
    expect(JSON.stringify(generateSchedule(42, 10_000, POSTGRES_TOPOLOGY, opts))).toBe(JSON.stringify(generateSchedule(42, 10_000, POSTGRES_TOPOLOGY, opts)));
    for (const clientLinksTo of ['own', 'all'] as const) {
      const o = { ...opts, clientLinksTo };
      expect(allLinks(POSTGRES_TOPOLOGY, o).filter((l) => l.startsWith('peer:'))).toEqual([]);
      expect(allLinks(POSTGRES_TOPOLOGY, o).filter((l) => l.startsWith('db:'))).toEqual(['db:0', 'db:1', 'db:2']);
      const kinds = new Set<string>();
      const outages = new Set<string>();
      for (let seed = 1; seed <= 300; seed++) {
        const s = generateSchedule(seed, 10_000, POSTGRES_TOPOLOGY, o);
        let out: Step | null = null;
        for (const step of s.steps) {
          if (step.op === 'heal') {
            out = null;
            continue;
          }
          const f = step.fault;
          kinds.add(f.type === 'partition' ? `partition:${f.kind}` : f.type);
          if (f.type === 'partition') {
            expect(f.cuts.every((c) => !c.link.startsWith('peer:'))).toBe(true);
            if (f.kind === 'database') expect(f.cuts.map((c) => c.link)).toHaveLength(1);
            if (f.kind === 'databases') expect(new Set(f.cuts.map((c) => c.link)).size).toBe(2);
            if (f.kind === 'minority') expect(f.cuts.filter((c) => c.link.startsWith('db:'))).toHaveLength(1);
          }
          if (f.type === 'delay') expect(f.links.every((l) => !l.startsWith('peer:'))).toBe(true);
          if (f.type !== 'database') continue;
          outages.add(f.how);
          if (step.op === 'start') {
            expect(out).toBeNull();
            out = step;
            // Always ended by its own step, within 2 s.
            const end = s.steps.find((e) => e.op === 'end' && e.id === step.id);
            expect(end && end.at - step.at).toBeLessThanOrEqual(2_000);
          } else {
            out = null;
          }
        }
      }
      expect([...kinds].sort()).toEqual(
        ['crash', 'database', 'delay', 'kill', 'partition:client', 'partition:clients-of', 'partition:database', 'partition:databases', 'partition:minority'].sort(),
      );
      expect([...outages].sort()).toEqual(['kill', 'pause', 'stop']);
    }
  });
});

describe('checker', () => {
  const schema: Schema = { text: 'text', map: 'map', list: 'array' };
  const EDIT = Symbol('edit');

  function editOn(doc: Y.Doc, id: string, fn: () => void) {
    let tr: Y.Transaction | null = null;
    const h = (t: Y.Transaction) => {
      if (t.origin === EDIT) tr = t;
    };
    doc.on('afterTransaction', h);
    doc.transact(fn, EDIT);
    doc.off('afterTransaction', h);
    return editIdOf(id, tr!);
  }

  it('finds equal replicas equal, and names the one that differs', () => {
    const a = new Y.Doc();
    a.getText('text').insert(0, 'hello');
    const b = new Y.Doc();
    Y.applyUpdate(b, Y.encodeStateAsUpdate(a));
    expect(compareReplicas([{ name: 'a', update: Y.encodeStateAsUpdate(a) }, { name: 'b', update: Y.encodeStateAsUpdate(b) }], schema).divergent).toEqual([]);
    b.getMap('map').set('k', 1);
    const cmp = compareReplicas([{ name: 'a', update: Y.encodeStateAsUpdate(a) }, { name: 'b', update: Y.encodeStateAsUpdate(b) }], schema);
    expect(cmp.divergent).toEqual(['a']);
    // A deletion alone (same state vector) is a difference too.
    const c = new Y.Doc();
    Y.applyUpdate(c, Y.encodeStateAsUpdate(a));
    c.getText('text').delete(0, 1);
    const cmp2 = compareReplicas([{ name: 'a', update: Y.encodeStateAsUpdate(a) }, { name: 'c', update: Y.encodeStateAsUpdate(c) }], schema);
    expect(cmp2.divergent).toEqual(['a']);
    expect(cmp2.details[0]).toMatch(/delete set/);
  });

  it('finds an edit whose insert or whose deletion a replica lacks, by Yjs id', () => {
    const a = new Y.Doc();
    const e1 = editOn(a, 'e1', () => a.getText('text').insert(0, 'abcdef'));
    const base = Y.encodeStateAsUpdate(a);
    const e2 = editOn(a, 'e2', () => {
      a.getText('text').delete(1, 2);
      a.getArray('list').insert(0, ['x']);
    });
    expect(e2.deletes).toEqual([[a.clientID, 1, 2]]);
    // A later edit deletes e1's remaining text: e1 is still "in" the replica (its items exist, deleted).
    const e3 = editOn(a, 'e3', () => a.getText('text').delete(0, a.getText('text').length));
    const full = Y.encodeStateAsUpdate(a);
    expect(missingEdits([{ name: 'full', update: full }], [e1, e2, e3])).toEqual([]);
    const stale = missingEdits([{ name: 'base', update: base }], [e1, e2, e3]).map((m) => m.edit);
    expect(stale).toEqual(['e2', 'e3']);
    // Same items but a deletion missing: the deletion is reported.
    const b = new Y.Doc();
    Y.applyUpdate(b, base);
    b.getArray('list').insert(0, ['y']);
    const noDelete = missingEdits([{ name: 'b', update: Y.encodeStateAsUpdate(b) }], [{ ...e2, end: e2.start }]);
    expect(noDelete.map((m) => m.why)).toEqual([`deletion of ${a.clientID}:1 missing`]);
  });
});

describe('trace replay', () => {
  it('the reference replay of the whole trace reaches endContent', () => {
    const trace = loadTrace();
    expect(trace.numAgents).toBe(2);
    expect(referenceText(trace)).toBe(trace.endContent);
  });

  it('replays a prefix through one relay as two clients, one of which crashes and reopens, to the expected text', async () => {
    const relay = await startRelay();
    cleanups.push(() => relay.dispose());
    const trace = loadTrace();
    const devices = [0, 1].map((a) => new TestDevice(relay.url, 'memory', `agent${a}`));
    const sessions: (TestSession | null)[] = await Promise.all(devices.map((d) => d.open('trace/prefix')));
    cleanups.push(() => Promise.all(sessions.map((s) => s?.close())));
    const replay = new TraceReplay(trace, (agent) => sessions[agent]?.handle.doc ?? null, { count: 3_000, waitTimeoutMs: 20_000 });
    cleanups.push(() => replay.destroy());
    const running = replay.run();
    // Crash agent 1's client once the replay is under way, reopen it from its storage.
    await new Promise<void>((resolve) => {
      const doc = sessions[1]!.handle.doc;
      const h = () => {
        if (doc.getText(TRACE_TEXT).length < 200) return;
        doc.off('afterTransaction', h);
        resolve();
      };
      doc.on('afterTransaction', h);
    });
    sessions[1]!.crash();
    sessions[1] = null;
    replay.sessionChanged(1);
    const reopened = await devices[1]!.open('trace/prefix');
    sessions[1] = reopened;
    replay.restore(1, reopened.handle.doc);
    replay.sessionChanged(1);
    const stats = await running;
    expect(stats.applied).toBe(stats.attempted);
    expect(stats.restores).toBe(1);
    await Promise.all(sessions.map((s) => s!.handle.flush({ durability: 'relay', timeoutMs: 20_000 })));
    await Promise.all(sessions.map((s) => s!.handle.whenSynced({ timeoutMs: 20_000 })));
    const expected = replay.expectedText();
    expect(expected).toBe(referenceText(trace, 3_000));
    for (const s of sessions) expect(s!.handle.doc.getText(TRACE_TEXT).toString()).toBe(expected);
    const res = await fetch(`${relay.httpUrl}/v1/docs/${encodeURIComponent('trace/prefix')}/update`);
    const onRelay = new Y.Doc();
    Y.applyUpdate(onRelay, new Uint8Array(await res.arrayBuffer()));
    expect(onRelay.getText(TRACE_TEXT).toString()).toBe(expected);
  }, 60_000);
});
