/**
 * Messages tabs of one origin exchange about one document over BroadcastChannel. Tabs
 * share edits at once (offline too), presence, and news of what the relay made durable.
 */
export type CrossTabMessage =
  /** A tab's local updates (merged); `entries` name them so whoever sends them can report them durable. */
  | { type: 'update'; from: string; update: Uint8Array; entries: string[] }
  /** Updates named here are durable on the relay (the sender got the ack). */
  | { type: 'durable'; from: string; entries: string[] }
  | { type: 'awareness'; from: string; update: Uint8Array }
  /** A tab opened: everyone answers with what it lacks (`sync-step-2`) and their presence. */
  | { type: 'sync-step-1'; from: string; stateVector: Uint8Array }
  | { type: 'sync-step-2'; from: string; to: string; update: Uint8Array };

export interface CrossTabChannel {
  post(msg: CrossTabMessage): void;
  close(): void;
}

/**
 * Opens the channel of one document, or returns null where BroadcastChannel does not
 * exist. Messages a tab posts never come back to itself (BroadcastChannel semantics).
 */
export function openCrossTab(docName: string, onMessage: (msg: CrossTabMessage) => void): CrossTabChannel | null {
  const BC = (globalThis as { BroadcastChannel?: typeof BroadcastChannel }).BroadcastChannel;
  if (!BC) return null;
  const channel = new BC(`capsync:${docName}`);
  channel.onmessage = (event: MessageEvent) => {
    const data = event.data as CrossTabMessage | null;
    if (data && typeof data === 'object' && typeof data.type === 'string') onMessage(data);
  };
  return {
    post: (msg) => {
      try {
        channel.postMessage(msg);
      } catch {
        // A closed channel or an uncloneable value: other tabs catch up through the relay.
      }
    },
    close: () => channel.close(),
  };
}
