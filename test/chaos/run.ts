/**
 * One chaos run (one seed) on a running `ChaosCluster`:
 *
 * 1. Eight clients open their documents through their proxies: c0..c5 (two per relay) edit
 *    the workload document with random text, map and array edits, each uniquely identifiable
 *    (a token `‹c3.17›`, a map value, an array element, and the Yjs ids it inserted and
 *    deleted); t0 (on relay A) and t1 (on B) replay the friendsforever trace into a second
 *    document. Every client keeps a MemoryStorage that outlives its crashes.
 * 2. The nemesis schedule of the seed runs (see schedule.ts): partitions, delays, relay
 *    SIGKILLs and restarts, client crashes and reopens, and on the 'postgres' topology relays
 *    cut from the database and the database stopped, killed or frozen, with a full heal ending
 *    each round.
 *    Every write is checked to be accepted locally the moment it is made (availability), and
 *    acknowledgements are tracked: an edit is acknowledged once a `flush({ durability:
 *    'relay' })` begun after it resolved, or its client's pending count reached 0.
 * 3. After the schedule: the workload stops, everything heals, and the run waits for every
 *    replica (clients, event-driven; the three relays over HTTP) to be equal, within the bound.
 *    Then the checks: no divergence, every acknowledged edit in every replica, the trace at
 *    its expected text (endContent for the whole trace), no relay process that exited by
 *    itself. (No lock history: see cluster.ts.)
 *
 * Also measured: after each round's heal, how long until every client holds everything any
 * client held at the heal ("catch-up", p50/p99 over the run's heals), and the final
 * convergence time from the last heal.
 */
import { EventEmitter } from 'node:events';
import * as Y from 'yjs';
import type { DocHandle } from '@capsync/client';
import { TestDevice, type TestSession } from '../support/client-fixture.js';
import { SeededRandom } from '../support/seeded-random.js';
import { waitForEvent } from '../support/wait.js';
import { compareReplicas, editIdOf, missingEdits, percentile, ReplicaIndex, type EditId, type ReplicaState, type Schema } from './checker.js';
import type { ChaosCluster } from './cluster.js';
import { describeStep, generateSchedule, type Schedule, type Step, type TopologyKind } from './schedule.js';
import { loadTrace, TRACE_TEXT, TraceReplay, type TraceStats } from './trace.js';

export const WORK_SCHEMA: Schema = { text: 'text', map: 'map', list: 'array' };
export const TRACE_SCHEMA: Schema = { [TRACE_TEXT]: 'text' };

export interface RunOptions {
  seed: number;
  /** Length of the nemesis schedule (the run lasts a little longer: heal, convergence, checks). */
  durationMs: number;
  /** Trace transactions to replay: all by default (endContent is checked), fewer for short runs, 0 for none. */
  traceTxns?: number;
  /** Replicas must be equal this long after the final heal (and after the trace finished). Default 20 s. */
  convergeBoundMs?: number;
  /** Pause between a client's edits, drawn from [min, max] ms. Default [40, 160]. */
  editIntervalMs?: [number, number];
  /** A label that makes the document names unique when a seed runs twice on one cluster. */
  runId?: string;
  log?: (line: string) => void;
}

export interface RunResult {
  seed: number;
  durationMs: number;
  topology: TopologyKind;
  ok: boolean;
  failures: string[];
  schedule: Schedule;
  counts: Schedule['counts'];
  writes: { attempted: number; applied: number; whileIsolated: number; acked: number; unsavedAtCrash: number };
  trace: (TraceStats & { ok: boolean; expectedLength: number }) | null;
  /** Final heal → every replica of the workload document equal (clients and relays). */
  convergeMs: number | null;
  /** End of the trace (or the final heal, if later) → trace document equal everywhere. */
  traceConvergeMs: number | null;
  /** After each round's heal: time until every client held what any client held at the heal. */
  catchUpMs: number[];
  catchUpInterrupted: number;
  lost: number;
  divergent: number;
  events: string[];
  wallMs: number;
}

const EDIT = Symbol('chaos:edit');

interface EditRecord extends EditId {
  clientName: string;
  at: number;
  acked: boolean;
  whileIsolated: boolean;
}

/** One life of a client: from open to crash (or the end of the run). */
interface Instance {
  session: TestSession;
  handle: DocHandle;
  dead: boolean;
  unacked: EditRecord[];
  wake: (() => void) | null;
  detach: () => void;
}

interface Slot {
  name: string;
  relay: number;
  kind: 'work' | 'trace';
  agent: number;
  doc: string;
  device: TestDevice;
  live: Instance | null;
  /** Unacknowledged edits of crashed instances, resolved at the reopen. */
  orphans: EditRecord[];
  reopening: Promise<void> | null;
  errors: string[];
}

export async function runChaos(cluster: ChaosCluster, options: RunOptions): Promise<RunResult> {
  const wall0 = performance.now();
  const { seed, durationMs } = options;
  const log = options.log ?? (() => {});
  const boundMs = options.convergeBoundMs ?? 20_000;
  const [minGap, maxGap] = options.editIntervalMs ?? [40, 160];
  const runId = options.runId ?? `${Date.now().toString(36)}`;
  const workDoc = `chaos/s${seed}-${runId}/work`;
  const traceDoc = `chaos/s${seed}-${runId}/trace`;
  const topology = cluster.topology;
  const schedule = generateSchedule(seed, durationMs, topology, cluster.scheduleOptions);
  const rnd = new SeededRandom(seed >>> 0);
  cluster.reseed(seed);

  const failures: string[] = [];
  const events: string[] = [];
  let t0 = performance.now();
  const stamp = () => `${((performance.now() - t0) / 1000).toFixed(2)}s`;
  const note = (line: string) => events.push(`${stamp()} ${line}`);

  const watcher = new EventEmitter();
  watcher.setMaxListeners(0);
  const changed = () => watcher.emit('change');

  const traceCount = options.traceTxns === undefined ? Infinity : options.traceTxns;
  const trace = traceCount > 0 ? loadTrace() : null;
  const slots: Slot[] = topology.clients
    .filter((c) => trace || c.name.startsWith('c'))
    .map((c) => ({
      name: c.name,
      relay: c.relay,
      kind: c.name.startsWith('t') ? ('trace' as const) : ('work' as const),
      agent: c.name.startsWith('t') ? Number(c.name.slice(1)) : -1,
      doc: c.name.startsWith('t') ? traceDoc : workDoc,
      device: new TestDevice(String(cluster.clientUrl(c.name)), 'memory', c.name),
      live: null,
      orphans: [],
      reopening: null,
      errors: [],
    }));
  const workSlots = slots.filter((s) => s.kind === 'work');
  const traceSlots = slots.filter((s) => s.kind === 'trace');
  const slotByName = new Map(slots.map((s) => [s.name, s]));

  const edits: EditRecord[] = [];
  const writes = { attempted: 0, applied: 0, whileIsolated: 0, acked: 0, unsavedAtCrash: 0 };
  let stopped = false;
  let replay: TraceReplay | null = null;

  // ---- client lives ----

  const ack = (inst: Instance, upTo: EditRecord[]) => {
    for (const e of upTo) {
      if (e.acked) continue;
      e.acked = true;
      writes.acked++;
    }
    const done = new Set(upTo);
    inst.unacked = inst.unacked.filter((e) => !done.has(e));
  };

  const flushLoop = async (inst: Instance) => {
    while (!inst.dead) {
      if (inst.unacked.length === 0) {
        await new Promise<void>((resolve) => (inst.wake = resolve));
        inst.wake = null;
        continue;
      }
      const covered = [...inst.unacked];
      try {
        await inst.handle.flush({ durability: 'relay', timeoutMs: 3_000 });
        ack(inst, covered);
      } catch {
        // Unavailable for now (partitioned, relay down): ask again.
      }
    }
  };

  const open = async (slot: Slot): Promise<Instance> => {
    const url = cluster.clientUrl(slot.name);
    const session = await slot.device.open(slot.doc, Array.isArray(url) ? ({ url } as never) : {});
    const handle = session.handle;
    const inst: Instance = { session, handle, dead: false, unacked: [], wake: null, detach: () => {} };
    const onPending = (n: number) => {
      if (n === 0 && inst.unacked.length > 0) ack(inst, [...inst.unacked]);
      changed();
    };
    const onError = (err: Error) => {
      if (slot.errors.length < 20) slot.errors.push(`${stamp()} ${err.message}`);
    };
    handle.doc.on('update', changed);
    handle.on('pending', onPending);
    handle.on('status', changed);
    handle.on('error', onError);
    inst.detach = () => {
      handle.doc.off('update', changed);
      handle.off('pending', onPending);
      handle.off('status', changed);
      handle.off('error', onError);
    };
    // Edits of an earlier life: those its storage kept are this life's to deliver; the rest died unsaved.
    if (slot.orphans.length > 0) {
      const index = new ReplicaIndex(slot.name, handle.doc);
      for (const e of slot.orphans) {
        if (index.lacks(e) === null) inst.unacked.push(e);
        else writes.unsavedAtCrash++;
      }
      slot.orphans = [];
    }
    slot.live = inst;
    if (slot.kind === 'work') void flushLoop(inst);
    if (slot.kind === 'trace' && replay) {
      replay.restore(slot.agent, handle.doc);
      replay.sessionChanged(slot.agent);
    }
    changed();
    return inst;
  };

  const crash = (slot: Slot) => {
    const inst = slot.live;
    if (!inst) return;
    slot.live = null;
    inst.dead = true;
    inst.detach();
    inst.session.crash();
    inst.wake?.();
    slot.orphans.push(...inst.unacked);
    inst.unacked = [];
    if (slot.kind === 'trace') replay?.sessionChanged(slot.agent);
    changed();
  };

  const reopen = (slot: Slot): Promise<void> => {
    if (slot.live) return Promise.resolve();
    if (!slot.reopening) {
      slot.reopening = open(slot).then(
        () => {
          slot.reopening = null;
        },
        (err: unknown) => {
          slot.reopening = null;
          throw err;
        },
      );
    }
    return slot.reopening;
  };

  // ---- the workload ----

  const edit = (slot: Slot, inst: Instance, n: number) => {
    const doc = inst.handle.doc;
    const id = `${slot.name}.${n}`;
    const token = `‹${id}›`;
    const text = doc.getText('text');
    const map = doc.getMap<string>('map');
    const list = doc.getArray<string>('list');
    const kind = rnd.pick(['text-insert', 'text-insert', 'text-replace', 'map-set', 'map-shared', 'list-insert', 'list-replace'] as const);
    let tr: Y.Transaction | null = null;
    const onAfter = (t: Y.Transaction) => {
      if (t.origin === EDIT) tr = t;
    };
    let key = '';
    doc.on('afterTransaction', onAfter);
    try {
      doc.transact(() => {
        switch (kind) {
          case 'text-insert':
            text.insert(rnd.int(0, text.length), token);
            break;
          case 'text-replace': {
            const at = rnd.int(0, text.length);
            const del = Math.min(rnd.int(1, 12), text.length - at);
            if (del > 0) text.delete(at, del);
            text.insert(at, token);
            break;
          }
          case 'map-set':
            key = id;
            map.set(key, id);
            break;
          case 'map-shared':
            // A few keys everyone writes: concurrent sets conflict (last writer wins, the loser's item is deleted).
            key = `k${rnd.int(0, 5)}`;
            map.set(key, id);
            break;
          case 'list-insert':
            list.insert(rnd.int(0, list.length), [id]);
            break;
          case 'list-replace': {
            const at = rnd.int(0, list.length);
            const del = Math.min(rnd.int(1, 3), list.length - at);
            if (del > 0) list.delete(at, del);
            list.insert(at, [id]);
            break;
          }
        }
      }, EDIT);
    } finally {
      doc.off('afterTransaction', onAfter);
    }
    writes.attempted++;
    const isolated = cluster.isolated(slot.name);
    if (isolated) writes.whileIsolated++;
    const t = tr as Y.Transaction | null;
    const visible =
      kind.startsWith('text') ? text.toString().includes(token) : kind.startsWith('map') ? map.get(key) === id : list.toArray().includes(id);
    if (!t || !visible) {
      failures.push(`write ${id} (${kind}) by ${slot.name} was not applied locally${isolated ? ' while isolated' : ''}`);
      return;
    }
    writes.applied++;
    const record: EditRecord = { ...editIdOf(id, t), clientName: slot.name, at: performance.now(), acked: false, whileIsolated: isolated };
    edits.push(record);
    inst.unacked.push(record);
    inst.wake?.();
  };

  const workloadLoop = async (slot: Slot) => {
    let n = 0;
    while (!stopped) {
      await new Promise((resolve) => setTimeout(resolve, rnd.int(minGap, maxGap)));
      if (stopped) break;
      const inst = slot.live;
      // A crashed client makes no writes until it reopens.
      if (!inst) continue;
      edit(slot, inst, n++);
    }
  };

  // ---- catch-up after each round's heal ----

  interface Sample {
    start: number;
    targets: Map<string, Map<number, number>>;
    done: boolean;
  }
  const samples: Sample[] = [];
  const catchUpMs: number[] = [];
  let catchUpInterrupted = 0;
  const groups = () => [workSlots, traceSlots].filter((g) => g.length > 0);
  const sampleDone = (s: Sample): boolean => {
    for (const group of groups()) {
      const target = s.targets.get(group[0]!.doc)!;
      for (const slot of group) {
        const inst = slot.live;
        if (!inst) return false;
        for (const [client, clock] of target) if (Y.getState(inst.handle.doc.store, client) < clock) return false;
      }
    }
    return true;
  };
  const checkSamples = () => {
    for (const s of samples) {
      if (s.done || !sampleDone(s)) continue;
      s.done = true;
      catchUpMs.push(performance.now() - s.start);
    }
  };
  watcher.on('change', checkSamples);
  const startSample = () => {
    const targets = new Map<string, Map<number, number>>();
    for (const group of groups()) {
      const target = new Map<number, number>();
      for (const slot of group) {
        const doc = slot.live?.handle.doc;
        if (!doc) continue;
        for (const [client, clock] of Y.decodeStateVector(Y.encodeStateVector(doc))) target.set(client, Math.max(clock, target.get(client) ?? 0));
      }
      targets.set(group[0]!.doc, target);
    }
    samples.push({ start: performance.now(), targets, done: false });
    checkSamples();
  };
  const interruptSamples = () => {
    for (const s of samples) {
      if (s.done) continue;
      s.done = true;
      catchUpInterrupted++;
    }
  };

  // ---- the nemesis ----

  const background = new Set<Promise<unknown>>();
  const track = (p: Promise<unknown>, what: string) => {
    const q = p.catch((err: unknown) => {
      failures.push(`${what} failed: ${(err as Error).message}`);
    });
    background.add(q);
    void q.finally(() => background.delete(q));
  };

  const healAll = async () => {
    cluster.healLinks();
    // Before the background work: a relay restart there may be waiting for the database.
    await cluster.startDatabase();
    await Promise.all([...background]);
    await cluster.restartAll();
    await Promise.all(slots.map((s) => reopen(s)));
  };

  let loops: Promise<void>[] = [];
  let healedAt: number | null = null;
  const apply = async (step: Step) => {
    note(describeStep(step));
    if (step.op === 'heal') {
      interruptSamples();
      if (step.final) {
        // The workload stops at the final heal; the trace goes on to its end.
        stopped = true;
        await Promise.all(loops);
      }
      await healAll();
      if (step.final) {
        healedAt = performance.now();
        note('healed: everything up, every link passes');
      } else {
        note(`healed (round ${step.round})`);
        startSample();
      }
      return;
    }
    const f = step.fault;
    if (step.op === 'start') interruptSamples();
    switch (f.type) {
      case 'partition':
        if (step.op === 'start') for (const c of f.cuts) cluster.cut(step.id, c.link, c.mode);
        else cluster.clearFault(step.id);
        return;
      case 'delay':
        if (step.op === 'start') for (const l of f.links) cluster.delay(step.id, l, { ms: f.ms, jitterMs: f.jitterMs });
        else cluster.clearFault(step.id);
        return;
      case 'kill':
        if (step.op === 'start') await cluster.kill(f.relay);
        else track(cluster.restart(f.relay), `restart of relay ${topology.relays[f.relay]}`);
        return;
      case 'database':
        if (step.op === 'start') await cluster.stopDatabase(f.how);
        else track(cluster.startDatabase(), 'start of the database');
        return;
      case 'crash': {
        const slot = slotByName.get(f.client);
        if (!slot) return;
        if (step.op === 'start') {
          await slot.reopening?.catch(() => {});
          crash(slot);
        } else {
          track(reopen(slot), `reopen of ${slot.name}`);
        }
        return;
      }
    }
  };

  const runSchedule = async () => {
    for (const step of schedule.steps) {
      const wait = t0 + step.at - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      await apply(step);
    }
  };

  // ---- convergence ----

  const clientStates = (group: Slot[]): ReplicaState[] =>
    group.map((s) => ({ name: `client ${s.name}`, update: Y.encodeStateAsUpdate(s.live!.handle.doc) }));

  const quiescent = (group: Slot[]): boolean => {
    let sv: string | null = null;
    for (const s of group) {
      const inst = s.live;
      if (!inst || inst.handle.pending > 0 || inst.handle.status !== 'synced') return false;
      const mine = JSON.stringify(Array.from(Y.decodeStateVector(Y.encodeStateVector(inst.handle.doc))).sort(([a], [b]) => a - b));
      if (sv !== null && mine !== sv) return false;
      sv = mine;
    }
    return true;
  };

  /** Waits until the group's clients and all relays hold equal replicas; returns ms from `from`, or throws with details. */
  const converge = async (group: Slot[], doc: string, schema: Schema, from: number, what: string): Promise<number> => {
    const deadline = from + boundMs;
    // Clients: on their own events, equal (state vectors first, the full comparison only when those agree).
    await waitForEvent(
      watcher,
      'change',
      () => quiescent(group) && compareReplicas(clientStates(group), schema).divergent.length === 0,
      `${what}: the clients to converge (${group.map((s) => `${s.name} ${s.live ? `${s.live.handle.status}/pending ${s.live.handle.pending}` : 'down'}`).join(', ')})`,
      Math.max(1, deadline - performance.now()),
    ).catch((err: Error) => {
      const cmp = compareReplicas(
        group.filter((s) => s.live).map((s) => ({ name: `client ${s.name}`, update: Y.encodeStateAsUpdate(s.live!.handle.doc) })),
        schema,
      );
      throw new Error(`${err.message}; ${cmp.details.join('; ') || 'no content difference'}`);
    });
    // Relays: an observer client on each, straight to the relay (no proxy), which the relay
    // keeps up to date like any client; wait on their updates until every replica is equal.
    const observers = await Promise.all(
      cluster.relays.map(async (_, r) => {
        const name = `relay ${topology.relays[r]}`;
        const session = await new TestDevice(`ws://127.0.0.1:${cluster.portOf(r)}`, 'memory', `observer of ${name}`).open(doc);
        return { name, session };
      }),
    );
    const onUpdate = () => watcher.emit('change');
    for (const o of observers) o.session.handle.doc.on('update', onUpdate);
    const relayViews = () => observers.map((o) => ({ name: o.name, update: Y.encodeStateAsUpdate(o.session.handle.doc) }));
    try {
      await waitForEvent(
        watcher,
        'change',
        () => compareReplicas([...clientStates(group), ...relayViews()], schema).divergent.length === 0,
        `${what}: the relays to hold what the clients hold`,
        Math.max(1, deadline - performance.now()),
      ).catch((err: Error) => {
        throw new Error(`${err.message}; ${compareReplicas([...clientStates(group), ...relayViews()], schema).details.join('; ')}`);
      });
      // What the relays serve (HTTP, their loaded replica) must agree too: one look, nothing is changing now.
      const relayStates = await Promise.all(
        cluster.relays.map(async (_, r) => ({ name: `relay ${topology.relays[r]} (HTTP)`, update: await cluster.relayState(r, doc) })),
      );
      const cmp = compareReplicas([...clientStates(group), ...relayStates], schema);
      if (cmp.divergent.length > 0) throw new Error(`${what}: a relay serves a different state than it sent its observer: ${cmp.details.join('; ')}`);
      return performance.now() - from;
    } finally {
      for (const o of observers) o.session.handle.doc.off('update', onUpdate);
      await Promise.all(observers.map((o) => o.session.close()));
    }
  };

  // ---- the run ----

  let convergeMs: number | null = null;
  let traceConvergeMs: number | null = null;
  let lost = 0;
  let divergent = 0;
  let traceResult: RunResult['trace'] = null;
  const counts = { ...schedule.counts };
  try {
    cluster.healLinks();
    await cluster.restartAll();
    for (const exit of cluster.takeUnexpectedExits()) note(`before the run: ${exit}`);
    await Promise.all(slots.map((s) => open(s)));
    // Everyone starts connected: the first sync round done (a fresh document on each relay).
    await Promise.all(
      slots.map((s) =>
        waitForEvent(watcher, 'change', () => s.live?.handle.status === 'synced', `${s.name} to connect before the run`, 20_000),
      ),
    );
    t0 = performance.now();
    note(`start: seed ${seed}, ${schedule.steps.length} nemesis steps over ${durationMs} ms`);

    let tracePromise: Promise<TraceStats> | null = null;
    if (trace) {
      replay = new TraceReplay(trace, (agent) => traceSlots[agent]?.live?.handle.doc ?? null, {
        count: traceCount,
        waitTimeoutMs: Math.max(60_000, durationMs + boundMs),
      });
      tracePromise = replay.run();
      // Failures surface below; keep an unobserved rejection from crashing the process meanwhile.
      tracePromise.catch(() => {});
    }
    loops = workSlots.map((s) => workloadLoop(s));
    await runSchedule();
    const healed = healedAt as number | null;
    if (healed === null) throw new Error('the schedule had no final heal');

    try {
      convergeMs = await converge(workSlots, workDoc, WORK_SCHEMA, healed, 'workload document');
      note(`workload document converged in ${convergeMs.toFixed(0)} ms`);
    } catch (err) {
      failures.push((err as Error).message);
    }

    if (replay && tracePromise) {
      try {
        const stats = await tracePromise;
        const doneAt = Math.max(performance.now(), healed);
        note(`trace replayed: ${stats.txns} transactions in ${stats.ms.toFixed(0)} ms`);
        const expected = replay.expectedText();
        traceResult = { ...stats, ok: false, expectedLength: expected.length };
        traceConvergeMs = await converge(traceSlots, traceDoc, TRACE_SCHEMA, doneAt, 'trace document');
        const wrong = traceSlots.filter((s) => s.live!.handle.doc.getText(TRACE_TEXT).toString() !== expected);
        const relayTexts = await Promise.all(cluster.relays.map(async (_, r) => textOf(await cluster.relayState(r, traceDoc))));
        const wrongRelays = relayTexts.flatMap((t, r) => (t === expected ? [] : [`relay ${topology.relays[r]}`]));
        if (wrong.length > 0 || wrongRelays.length > 0) {
          failures.push(
            `trace document does not end at the expected text (${replay.count === trace!.txns.length ? 'endContent' : `reference of ${replay.count} transactions`}, ${expected.length} chars): ${[...wrong.map((s) => `client ${s.name}`), ...wrongRelays].join(', ')} differ`,
          );
        } else {
          traceResult.ok = true;
        }
      } catch (err) {
        replay.abort(err as Error);
        failures.push(`trace: ${(err as Error).message}`);
      }
    }

    // Every replica of the workload document, for the final checks.
    try {
      const replicas: ReplicaState[] = [
        ...workSlots.filter((s) => s.live).map((s) => ({ name: `client ${s.name}`, update: Y.encodeStateAsUpdate(s.live!.handle.doc) })),
        ...(await Promise.all(cluster.relays.map(async (_, r) => ({ name: `relay ${topology.relays[r]}`, update: await cluster.relayState(r, workDoc) })))),
      ];
      const cmp = compareReplicas(replicas, WORK_SCHEMA);
      divergent = cmp.divergent.length;
      // (When convergence already failed, that failure has the details.)
      if (divergent > 0 && convergeMs !== null) failures.push(`divergent after convergence: ${cmp.details.join('; ')}`);
      const acked = edits.filter((e) => e.acked);
      const missing = missingEdits(replicas, acked);
      lost = new Set(missing.map((m) => m.edit)).size;
      if (lost > 0) {
        const sample = missing.slice(0, 8).map((m) => `${m.edit} in ${m.replica} (${m.why})`);
        failures.push(`${lost} acknowledged edit(s) lost: ${sample.join('; ')}`);
      }
    } catch (err) {
      failures.push(`final check: ${(err as Error).message}`);
    }
    failures.push(...cluster.takeUnexpectedExits());
    if (failures.length > 0) events.push(...(await cluster.diagnostics()));
    if (writes.applied !== writes.attempted) failures.push(`availability: ${writes.applied}/${writes.attempted} writes accepted locally`);
    if (traceResult && traceResult.applied !== traceResult.attempted) {
      failures.push(`availability (trace): ${traceResult.applied}/${traceResult.attempted} transactions accepted locally`);
    }
  } catch (err) {
    failures.push((err as Error).stack ?? String(err));
  } finally {
    stopped = true;
    replay?.abort(new Error('run over'));
    watcher.removeAllListeners();
    for (const s of slots) {
      const inst = s.live;
      if (!inst) continue;
      inst.dead = true;
      inst.wake?.();
      inst.detach();
    }
    await Promise.allSettled([...background]);
    await Promise.allSettled(slots.map((s) => s.live?.session.close()));
    replay?.destroy();
    cluster.healLinks();
  }
  if (failures.length > 0) {
    for (const s of slots) if (s.errors.length > 0) events.push(`errors seen by ${s.name}: ${s.errors.slice(0, 5).join(' | ')}`);
  }
  log(`seed ${seed}: ${failures.length === 0 ? 'ok' : 'FAILED'}`);
  return {
    seed,
    durationMs,
    topology: cluster.kind,
    ok: failures.length === 0,
    failures,
    schedule,
    counts,
    writes,
    trace: traceResult,
    convergeMs,
    traceConvergeMs,
    catchUpMs,
    catchUpInterrupted,
    lost,
    divergent,
    events,
    wallMs: performance.now() - wall0,
  };
}

function textOf(update: Uint8Array): string {
  const doc = new Y.Doc();
  Y.applyUpdate(doc, update);
  const text = doc.getText(TRACE_TEXT).toString();
  doc.destroy();
  return text;
}

/** The one-line summary of a run. */
export function summarize(r: RunResult): string {
  const ms = (v: number | null) => (v === null ? '—' : `${Math.round(v)} ms`);
  const p50 = percentile(r.catchUpMs, 50);
  const p99 = percentile(r.catchUpMs, 99);
  const trace = r.trace
    ? `trace ${r.trace.txns} txns ${r.trace.ok ? 'ok' : 'WRONG'} (${r.trace.waits} waits, ${r.trace.restores} retypes, converged ${ms(r.traceConvergeMs)})`
    : 'no trace';
  return [
    `seed=${r.seed}`,
    `duration=${(r.durationMs / 1000).toFixed(1)}s`,
    `partitions=${r.counts.partitions} delays=${r.counts.delays} heals=${r.counts.heals} kills=${r.counts.kills} crashes=${r.counts.crashes}${r.topology === 'postgres' ? ` db-outages=${r.counts.databaseOutages}` : ''}`,
    `writes=${r.writes.applied}/${r.writes.attempted} accepted (${r.writes.whileIsolated} isolated) acked=${r.writes.acked} unsaved-at-crash=${r.writes.unsavedAtCrash}`,
    trace,
    `converge=${ms(r.convergeMs)} catch-up p50=${ms(p50)} p99=${ms(p99)} (${r.catchUpMs.length} heals${r.catchUpInterrupted ? `, ${r.catchUpInterrupted} interrupted` : ''})`,
    `lost=${r.lost} divergent=${r.divergent}`,
    `${(r.wallMs / 1000).toFixed(1)}s`,
  ].join(' ');
}

export function rerunCommand(r: Pick<RunResult, 'seed' | 'durationMs' | 'topology'>, extra: string[] = []): string {
  const topology = r.topology === 'postgres' ? ['--topology', 'postgres'] : [];
  return ['npm run chaos --', '--seed', String(r.seed), '--duration', String(r.durationMs), ...topology, ...extra].join(' ');
}

/** The failure report: names the seed, what failed, the nemesis timeline, and how to rerun it. */
export function failureReport(r: RunResult, extra: string[] = []): string {
  return [
    `chaos seed ${r.seed} FAILED (${r.failures.length} problem(s)):`,
    ...r.failures.map((f) => `  - ${f}`),
    `  timeline:`,
    ...r.events.map((e) => `    ${e}`),
    `  rerun: ${rerunCommand(r, extra)}`,
  ].join('\n');
}
