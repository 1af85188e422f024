import type * as Y from 'yjs';

/**
 * Hooks a backend passes to `createRelay` to react to what happens on the relay. Contract, for
 * every hook:
 * - It runs after the fact, off the relay's path: the relay never waits for it, except
 *   `onLoadDocument`, which the document's first clients wait for (at most `hookTimeoutMs`).
 * - It may be sync or return a promise. One that throws, rejects or takes longer than
 *   `hookTimeoutMs` is logged and counted (`capsync_hook_calls_total{hook, outcome}`), never
 *   crashes the relay, never holds up other documents, and never costs an update: documents,
 *   acknowledgements and storage do not depend on hooks.
 * - Calls are bounded: `onChange` and `onStoreDocument` are coalesced per document (one call in
 *   flight each, until it settles, past its timeout too: a hook that never settles stops that
 *   document's calls of it; what happens meanwhile is merged into the next call, made after an
 *   unload too), and at most `maxHookCallsInFlight` (MAX_HOOK_CALLS_IN_FLIGHT) calls of all hooks run at once (past it a
 *   call is dropped and counted as `dropped`; a call past its timeout counts until it settles).
 * - Only clients' sessions are reported to onConnect / onDisconnect (not relays' links), in
 *   pairs: an onConnect dropped under that bound drops its session's onDisconnect too, and the
 *   onDisconnect of a session whose onConnect was made is never dropped (it may run past the
 *   bound: at most one per such session). A count of sessions kept from them does not drift.
 * - `onAwareness` is the exception to "after the fact": it is synchronous, see there.
 * - `onChange` reports changes as they are applied, before their commit (a change whose commit
 *   fails is sent again by its client, and may then be reported twice).
 * - Events are this relay's: a change another relay of the mesh or cluster made is reported
 *   by that relay, not again by every relay that receives it.
 */
export interface RelayHooks {
  /** A client's session of a document began (authorized, the document loaded). */
  onConnect?(event: ConnectionEvent): unknown;
  /** That session ended (`code`: the close code, when the relay closed it). */
  onDisconnect?(event: ConnectionEvent & { code?: number }): unknown;
  /**
   * A document was loaded with nothing stored. Edits made to `doc` (a fresh Y.Doc, before the
   * promise resolves) become the document's first content: stored as the relay's change and sent
   * to its clients. Called once per load (the clients arriving meanwhile wait for the same call):
   * one that throws or times out leaves the document empty and served, and is asked again only
   * when the document loads again while still empty (after it unloaded), never per client.
   * Runs on every relay that loads a document still empty: in a cluster or mesh, two relays
   * loading it at once both seed it, and the document then holds both seeds merged (two texts
   * inserted, a map key set twice: one wins). Seed what merges well (map keys), or a single
   * relay's seed.
   */
  onLoadDocument?(event: { docName: string; doc: Y.Doc }): unknown;
  /**
   * The document changed (its clients', HTTP or server-side writes): called at most every
   * `changeDebounceMs` of quiet (and at least every `changeMaxWaitMs` while changes go on) with
   * what changed since the last call, merged. `document()` builds a copy of the document as it is
   * now (costs its size; edits to the copy go nowhere).
   */
  onChange?(event: { docName: string; update: Uint8Array; document(): Y.Doc }): unknown;
  /**
   * The document has changes made through this relay that `onChange` has not reported yet: called
   * at the first of them, once per debounce window (each call is followed by one `onChange`,
   * unless the relay dies first). For marking a document dirty durably before its onChange.
   */
  onChangePending?(event: { docName: string }): unknown;
  /** This relay committed changes of the document, through `position` (the latest, coalesced). */
  onStoreDocument?(event: { docName: string; position: number }): unknown;
  /**
   * A client of this relay set its awareness (presence) state, before the relay applies and
   * broadcasts it. Return `undefined` to let it pass, `false` to drop it (not applied, not
   * sent to anyone; the client's earlier state, if any, stays until it times out), or a state
   * to put in its place (e.g. the same without a private field). Contract:
   * - Synchronous: it runs on the path of presence, so the relay does not wait for it. A hook
   *   that returns a promise is not waited for: the state is dropped at once, counted as
   *   `timeout` (what it resolves to is ignored). Keep it to a few microseconds: it runs on the
   *   event loop, as the relay does, and `hookTimeoutMs` cannot interrupt it.
   * - Fails closed: one that throws drops the state (counted `error`), so a client cannot get a
   *   state past the hook by making it throw.
   * - A rewrite is checked as a client's state is: it must encode as a JSON object within twice
   *   `--max-awareness-state-bytes` (room for what the hook adds); it keeps the client id and
   *   clock it replaces (the hook cannot set another client's presence). One that does not pass
   *   counts as `error` and the state is dropped.
   * - Removals (a client leaving) and states relayed by peer relays are not shown to it: the
   *   relay a client is connected to judges its states.
   * Every call counts in `capsync_hook_calls_total{hook="onAwareness"}`.
   */
  onAwareness?(event: AwarenessEvent): AwarenessVerdict;
  /**
   * The document was deleted through this relay (`DELETE /v1/docs/:name`), committed: its
   * content is gone, its sessions closed, and a new document of the name starts empty at
   * `incarnation`. `identity`: the deleting token's `sub`. Called by the relay that deleted it
   * only (not by the other relays of a cluster, which drop their copies).
   */
  onDocumentDeleted?(event: { docName: string; identity: string | undefined; incarnation: number }): unknown;
}

export interface AwarenessEvent {
  docName: string;
  /** The client's awareness id (its Yjs client id, as y-protocols sets it). */
  clientID: number;
  /** The state the client sent (a fresh copy, parsed from its JSON). */
  state: unknown;
  /** The token's `sub` of the client's session; undefined on an open relay or without one. */
  identity: string | undefined;
}

/** What onAwareness answers: pass (`undefined`), drop (`false`) or a state in its place. */
export type AwarenessVerdict = undefined | void | false | Record<string, unknown>;

export interface ConnectionEvent {
  docName: string;
  /** The token's `sub`; undefined on an open relay or for a token without one. */
  identity: string | undefined;
  permission: 'read' | 'write';
}

export type HookName = keyof RelayHooks;

/** Hook calls running at once, at most (all hooks, all documents), by default (`maxHookCallsInFlight`). */
export const MAX_HOOK_CALLS_IN_FLIGHT = 1_000;
