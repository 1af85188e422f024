import type { AwarenessEntry } from '@capsync/core';
import type { HookRunner } from './hook-runner.js';

/** What the relay does with one client's awareness state, after the backend's onAwareness. */
export type AwarenessReview = { keep: AwarenessEntry } | { drop: true };

/**
 * One document's side of `onAwareness` (see RelayHooks.onAwareness): asks the hook about a
 * state a client set, synchronously, and checks a rewrite as a client's state is checked (JSON,
 * an object), within twice `maxStateBytes` (room for what the hook adds to a state at the
 * client's limit). The entry keeps its client id and clock whatever the hook answers: only its
 * state can change. Fails closed: a hook that throws, answers with a promise or with what the
 * relay cannot use drops the state, so a client cannot get past a hook by making it fail (a
 * state padded to the limit, a field that makes it throw).
 */
export class AwarenessHook {
  private readonly encoder = new TextEncoder();

  constructor(
    private readonly docName: string,
    private readonly runner: HookRunner,
    private readonly maxStateBytes: number,
  ) {}

  /** `entry` (a state, not a removal) as the hook would have it; dropped when the hook failed. */
  review(entry: AwarenessEntry, identity: string | undefined): AwarenessReview {
    let json: string | undefined;
    const valid = (result: unknown): boolean => {
      if (result === undefined || result === false) return true;
      if (typeof result !== 'object' || result === null || Array.isArray(result)) return false;
      try {
        json = JSON.stringify(result);
      } catch {
        return false; // a cycle, a BigInt
      }
      return typeof json === 'string' && this.encoder.encode(json).byteLength <= 2 * this.maxStateBytes;
    };
    // A copy: what the hook does to the object it is given changes nothing it did not return.
    const answer = this.runner.runSync('onAwareness', { docName: this.docName, clientID: entry.clientID, state: structuredClone(entry.state), identity }, valid);
    if (answer === undefined || answer.result === false) return { drop: true };
    if (answer.result === undefined) return { keep: entry };
    // Parsed back from its JSON: what is stored and sent is exactly what a client would decode.
    const state: unknown = JSON.parse(json!);
    return { keep: { clientID: entry.clientID, clock: entry.clock, state, stateBytes: this.encoder.encode(json!).byteLength } };
  }
}
