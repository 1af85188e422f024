/**
 * The concurrent trace (friendsforever: two people typing at once) replayed by two capsync
 * clients over the relay, one client per agent, in trace order.
 *
 * A transaction's positions refer to the document as its agent saw it after its `parents`,
 * but a client's replica may already hold more (the other agent's later edits arrive over the
 * network on their own). So each agent keeps a shadow Y.Doc that holds exactly the version
 * the agent saw; the edit is made there, and the resulting update is applied to the client's
 * doc as a local change (the client stores it, counts it pending and sends it, exactly as for
 * typing). Agent k's edits carry Yjs clientID k + 1: where two agents insert at one place
 * (after a character one of them deleted), Yjs orders by clientID, and this trace's endContent
 * has the lower agent first. Before an agent's transaction, its client must have
 * received the parents' updates from the relay: the replay waits for that (syncing as the trace
 * dictates) and counts the waits. Each transaction is typed in its own task. The final text of
 * both clients must equal endContent.
 */
import { WebSocket } from 'ws';
import * as Y from 'yjs';
import { createClient, type CapsyncClient, type DocHandle, type WebSocketConstructor } from '@capsync/client';
import type { BenchRelay } from './relay.js';
import { TEXT_NAME, type NextTask } from './replay.js';
import type { ConcurrentTrace } from './traces.js';
import { countingWebSocket, emptyCounts, type WireCounts } from './wire-count.js';

/** Origin of the agents' edits applied to their client's doc: anything but the client's own origins is local. */
const TYPING = Symbol('client-trace:typing');

export interface ConcurrentRun {
  /** Start of the replay until both clients hold endContent and every update is durable on the relay. */
  totalMs: number;
  /** Both clients' final text equals endContent. */
  converged: boolean;
  txns: number;
  /** Transactions that had to wait for their parents to arrive over the network, and the time spent waiting. */
  waits: number;
  waitMs: number;
  wire: WireCounts[];
}

/** What proves a transaction's update arrived: its last inserted character, or a character it deleted. */
type Witness = { kind: 'clock'; client: number; clock: number } | { kind: 'deleted'; id: Y.ID } | null;

function arrived(doc: Y.Doc, w: Witness): boolean {
  if (w === null) return true;
  if (w.kind === 'clock') return Y.getState(doc.store, w.client) >= w.clock;
  if (Y.getState(doc.store, w.id.client) <= w.id.clock) return false;
  return Y.getItem(doc.store, w.id).deleted;
}

function whenArrived(doc: Y.Doc, w: Witness, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (!arrived(doc, w)) return;
      done();
      resolve();
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`concurrent replay: an update from the other agent did not arrive within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      doc.off('afterTransaction', check);
    };
    doc.on('afterTransaction', check);
    check();
  });
}

export async function runConcurrent(relay: BenchRelay, trace: ConcurrentTrace, docName: string, timeoutMs: number, nextTask: NextTask): Promise<ConcurrentRun> {
  const n = trace.numAgents;
  const wire = Array.from({ length: n }, emptyCounts);
  const clients: CapsyncClient[] = wire.map((counts) =>
    createClient({
      url: relay.url,
      storage: 'memory',
      crossTab: false,
      WebSocket: countingWebSocket(WebSocket as unknown as WebSocketConstructor, counts),
    }),
  );
  try {
    const handles: DocHandle[] = await Promise.all(clients.map((c) => c.open(docName)));
    await Promise.all(handles.map((h) => h.whenSynced({ timeoutMs })));
    const shadows = handles.map((_, agent) => {
      const shadow = new Y.Doc();
      shadow.clientID = agent + 1;
      return shadow;
    });
    const updates: (Uint8Array | null)[] = new Array(trace.txns.length).fill(null);
    const witnesses: Witness[] = new Array(trace.txns.length).fill(null);
    const seen = shadows.map(() => new Uint8Array(trace.txns.length));
    let waits = 0;
    let waitMs = 0;

    const t0 = performance.now();
    for (let i = 0; i < trace.txns.length; i++) {
      const { agent, parents, patches } = trace.txns[i]!;
      const shadow = shadows[agent]!;
      const handle = handles[agent]!;

      // The agent's version: merge the parents' histories it has not seen yet.
      const missing: number[] = [];
      const stack = [...parents];
      while (stack.length > 0) {
        const j = stack.pop()!;
        if (seen[agent]![j]) continue;
        seen[agent]![j] = 1;
        missing.push(j);
        stack.push(...trace.txns[j]!.parents);
      }
      missing.sort((x, y) => x - y);
      // Its client must have received them too; updates of one agent arrive in order, so the latest suffices.
      const latest = new Map<number, number>();
      for (const j of missing) {
        const other = trace.txns[j]!.agent;
        if (other === agent) throw new Error(`concurrent replay: transaction ${i} depends on its own agent's transaction ${j}, not yet replayed`);
        latest.set(other, j);
      }
      for (const j of latest.values()) {
        if (arrived(handle.doc, witnesses[j]!)) continue;
        waits++;
        const w0 = performance.now();
        await whenArrived(handle.doc, witnesses[j]!, timeoutMs);
        waitMs += performance.now() - w0;
      }
      shadow.transact(() => {
        for (const j of missing) if (updates[j]) Y.applyUpdate(shadow, updates[j]);
      });

      // The edit, on the agent's version; its update goes to the client as typing.
      const text = shadow.getText(TEXT_NAME);
      // (Assigned in callbacks: typed by assertion so TypeScript does not narrow them to null.)
      let update = null as Uint8Array | null;
      let deleted = null as Y.ID | null;
      const keep = (u: Uint8Array): void => {
        update = update ? Y.mergeUpdates([update, u]) : u;
      };
      shadow.on('update', keep);
      shadow.transact(() => {
        for (const [pos, del, ins] of patches) {
          if (del > 0) {
            deleted ??= Y.createRelativePositionFromTypeIndex(text, pos).item;
            text.delete(pos, del);
          }
          if (ins.length > 0) text.insert(pos, ins);
        }
      });
      shadow.off('update', keep);
      seen[agent]![i] = 1;
      updates[i] = update;
      const inserted = patches.some(([, , ins]) => ins.length > 0);
      witnesses[i] = inserted
        ? { kind: 'clock', client: shadow.clientID, clock: Y.getState(shadow.store, shadow.clientID) }
        : deleted
          ? { kind: 'deleted', id: deleted }
          : null;
      if (update) Y.applyUpdate(handle.doc, update, TYPING);
      // Each transaction is its own task, as typing is.
      await nextTask();
    }
    // Everything durable on the relay, then each client holds everything the relay has.
    await Promise.all(handles.map((h) => h.flush({ durability: 'relay', timeoutMs })));
    await Promise.all(handles.map((h) => h.whenSynced({ timeoutMs })));
    const totalMs = performance.now() - t0;
    for (const s of shadows) s.destroy();
    return {
      totalMs,
      converged: handles.every((h) => h.doc.getText(TEXT_NAME).toString() === trace.endContent),
      txns: trace.txns.length,
      waits,
      waitMs,
      wire,
    };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}
