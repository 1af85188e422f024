/**
 * The bench's client on one relay: one WebSocket to the benchmark document speaking the
 * capsync protocol (hello, so the relay acknowledges durable updates), which
 *
 * - writes the divergent edits as separate update messages (a window of unacknowledged
 *   updates keeps the relay busy without flooding it) and waits until the relay acknowledged
 *   all of them as applied and committed;
 * - then watches what the relay broadcasts: after the heal, the relay forwards to its
 *   clients what it integrated from its peer, so the time the broadcast that completes the
 *   expected state vector arrives is (just after) the time the relay held that state.
 *
 * The connection also keeps the document loaded on the relay, which is what makes an
 * on-demand relay open its peer link for it.
 */
import WebSocket from 'ws';
import * as Y from 'yjs';
import { PROTOCOL_VERSION, decodeMessage, encodeMessage } from '@capsync/core';
import { epochMs } from './clock.js';

const HANDSHAKE_TIMEOUT_MS = 15_000;

export type StateVector = Map<number, number>;

/** True when `sv` holds at least `target`'s clock for every client. */
export function covers(sv: StateVector, target: StateVector): boolean {
  for (const [client, clock] of target) if ((sv.get(client) ?? 0) < clock) return false;
  return true;
}

interface Watch {
  sv: StateVector;
  target: StateVector;
  resolve(atMs: number): void;
}

export class EditClient {
  private sent = 0;
  private acked = 0;
  private ackWaiter: (() => void) | null = null;
  private failure: Error | null = null;
  private watch: Watch | null = null;
  /** Update messages received (broadcasts) and their bytes, since the last `resetReceived`. */
  received = { messages: 0, bytes: 0 };

  private constructor(
    readonly label: string,
    private readonly ws: WebSocket,
  ) {
    ws.on('message', (data: Buffer) => this.onMessage(data));
    ws.on('close', (code, reason) => this.fail(new Error(`${label}: connection closed (${code} ${reason.toString()})`)));
    ws.on('error', (err) => this.fail(new Error(`${label}: ${err.message}`)));
  }

  /** Connects, says hello, and resolves once the relay registered the connection (its sync step 1). */
  static async connect(url: string, label: string): Promise<EditClient> {
    const ws = new WebSocket(url, { perMessageDeflate: false, skipUTF8Validation: true, maxPayload: 256 * 2 ** 20 });
    ws.binaryType = 'nodebuffer';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`${label}: no sync step 1 from ${url} within ${HANDSHAKE_TIMEOUT_MS} ms`)), HANDSHAKE_TIMEOUT_MS);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        ws.removeAllListeners();
        ws.on('error', () => {});
        ws.terminate();
        reject(err);
      };
      ws.once('open', () => ws.send(encodeMessage({ type: 'hello', protocolVersion: PROTOCOL_VERSION, capabilities: ['ack', 'error'] })));
      ws.on('message', (data: Buffer) => {
        if (data.length >= 2 && data[0] === 0 && data[1] === 0) {
          clearTimeout(timer);
          ws.removeAllListeners();
          resolve();
        }
      });
      ws.once('error', (err) => fail(new Error(`${label}: ${err.message}`)));
      ws.once('close', (code) => fail(new Error(`${label}: closed during the handshake (${code})`)));
    });
    return new EditClient(label, ws);
  }

  /** Sends every update as its own message, at most `window` unacknowledged; resolves once all are acknowledged. */
  async write(updates: Uint8Array[], window: number): Promise<void> {
    const target = this.sent + updates.length;
    let next = 0;
    while (this.acked < target) {
      if (this.failure) throw this.failure;
      while (next < updates.length && this.sent - this.acked < window) {
        this.ws.send(encodeMessage({ type: 'update', update: updates[next++]! }));
        this.sent++;
      }
      await new Promise<void>((resolve) => (this.ackWaiter = resolve));
    }
    if (this.failure) throw this.failure;
  }

  /**
   * Starts watching broadcasts: resolves with the arrival time (epoch ms) of the message that
   * made the relay's state vector, starting from `start`, cover `target`.
   */
  whenCovers(start: StateVector, target: StateVector): Promise<number> {
    if (this.watch) throw new Error(`${this.label}: already watching`);
    return new Promise<number>((resolve) => {
      const sv = new Map(start);
      if (covers(sv, target)) return resolve(epochMs());
      this.watch = {
        sv,
        target,
        resolve: (at) => {
          this.watch = null;
          resolve(at);
        },
      };
    });
  }

  /** Stops a watch that did not complete. */
  cancelWatch(): void {
    this.watch = null;
  }

  resetReceived(): void {
    this.received = { messages: 0, bytes: 0 };
  }

  get error(): Error | null {
    return this.failure;
  }

  async close(): Promise<void> {
    this.ws.removeAllListeners('close');
    this.failure ??= new Error(`${this.label}: closed by the bench`);
    await new Promise<void>((resolve) => {
      if (this.ws.readyState === WebSocket.CLOSED) return resolve();
      const timer = setTimeout(() => this.ws.terminate(), 5_000);
      this.ws.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.ws.close();
    });
  }

  private onMessage(data: Buffer): void {
    const at = epochMs();
    let msg;
    try {
      msg = decodeMessage(data);
    } catch (err) {
      this.fail(new Error(`${this.label}: undecodable message from the relay: ${(err as Error).message}`));
      return;
    }
    switch (msg.type) {
      case 'ack':
        this.acked = Math.max(this.acked, msg.seq);
        this.wake();
        return;
      case 'error':
        this.fail(new Error(`${this.label}: relay refused update ${msg.seq}: ${msg.code} ${msg.message}`));
        return;
      case 'update':
      case 'sync-step-2': {
        this.received.messages++;
        this.received.bytes += data.byteLength;
        const watch = this.watch;
        if (!watch) return;
        const { to } = Y.parseUpdateMeta(msg.update);
        for (const [client, clock] of to) if (clock > (watch.sv.get(client) ?? 0)) watch.sv.set(client, clock);
        if (covers(watch.sv, watch.target)) watch.resolve(at);
        return;
      }
      default:
        return;
    }
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.wake();
  }

  private wake(): void {
    const w = this.ackWaiter;
    this.ackWaiter = null;
    w?.();
  }
}
