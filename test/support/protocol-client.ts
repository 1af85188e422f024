import * as awarenessProtocol from 'y-protocols/awareness';
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { PROTOCOL_VERSION, decodeMessage, encodeMessage, type Message } from '@capsync/core';
import { waitForEvent } from './wait.js';

export interface ProtocolClientOptions {
  /** Announce capsync support (hello) to get acks and typed errors. Default true. */
  hello?: boolean;
  protocols?: string[];
  headers?: Record<string, string>;
  /** Local address to connect from (e.g. 127.0.0.2: another client address for per-address caps). */
  localAddress?: string;
  /** Reply to the relay's sync step 1 with our state. Default true. */
  answerSync?: boolean;
  /** More hello capabilities (e.g. `writes:<client id>`, as the capsync client declares). */
  capabilities?: string[];
  /** The protocol version the hello claims. Default PROTOCOL_VERSION. */
  protocolVersion?: number;
}

export interface CloseInfo {
  code: number;
  reason: string;
}

const REMOTE = Symbol('remote');

/**
 * A minimal wire-level client for relay tests: speaks the protocol by hand over a real
 * WebSocket, keeps a Y.Doc, counts what it sends (seq) and records what it receives.
 * Events: 'message' (Message), 'close' (CloseInfo), 'change' (after either).
 */
export class ProtocolClient extends EventEmitter {
  readonly doc = new Y.Doc();
  readonly received: Message[] = [];
  /** Document-carrying messages sent (sync step 2 + update), as the relay counts them. */
  seq = 0;
  ackedSeq = 0;
  lastAck: Extract<Message, { type: 'ack' }> | null = null;
  errors: Extract<Message, { type: 'error' }>[] = [];
  closeInfo: CloseInfo | null = null;
  private gotStep2 = false;

  private constructor(
    readonly ws: WebSocket,
    private readonly options: ProtocolClientOptions,
  ) {
    super();
    this.setMaxListeners(100);
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: Buffer) => this.onFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)));
    ws.on('close', (code, reason) => {
      this.closeInfo = { code, reason: reason.toString() };
      this.emit('close', this.closeInfo);
      this.emit('change');
    });
    ws.on('error', () => {});
    this.doc.on('update', (update: Uint8Array, origin: unknown) => {
      if (origin !== REMOTE && ws.readyState === WebSocket.OPEN) this.sendMessage({ type: 'update', update });
    });
  }

  /** Connects to `${url}/${doc}` (url already containing the doc path is fine too). */
  static async connect(url: string, options: ProtocolClientOptions = {}): Promise<ProtocolClient> {
    const ws = new WebSocket(url, options.protocols ?? [], {
      headers: options.headers ?? {},
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    });
    const client = new ProtocolClient(ws, options);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('close', (code, reason) => reject(new Error(`closed before open: ${code} ${reason.toString()}`)));
    });
    if (options.hello ?? true) client.sendMessage({ type: 'hello', protocolVersion: options.protocolVersion ?? PROTOCOL_VERSION, capabilities: ['ack', 'error', ...(options.capabilities ?? [])] });
    client.sendMessage({ type: 'sync-step-1', stateVector: Y.encodeStateVector(client.doc) });
    return client;
  }

  /** Connects and waits for the initial sync (the relay's answer to our step 1). */
  static async synced(url: string, options: ProtocolClientOptions = {}): Promise<ProtocolClient> {
    const client = await ProtocolClient.connect(url, options);
    await client.waitSynced();
    return client;
  }

  get text(): string {
    return this.doc.getText('t').toString();
  }

  /** The length of text "t", without rendering it (cheap enough to check after every message). */
  get textLength(): number {
    return this.doc.getText('t').length;
  }

  /** Inserts at the end of text "t"; the update goes out at once. Returns its seq. */
  type(text: string): number {
    const t = this.doc.getText('t');
    t.insert(t.length, text);
    return this.seq;
  }

  sendMessage(msg: Message): void {
    if (msg.type === 'update' || msg.type === 'sync-step-2') this.seq++;
    this.ws.send(encodeMessage(msg));
  }

  sendRaw(data: Uint8Array | string): void {
    this.ws.send(data);
  }

  waitSynced(timeoutMs = 10_000): Promise<true> {
    return waitForEvent(this, 'message', () => this.gotStep2 || undefined, 'initial sync', timeoutMs);
  }

  waitForAck(seq: number, timeoutMs = 10_000): Promise<true> {
    return waitForEvent(this, 'message', () => this.ackedSeq >= seq || undefined, `ack of seq ${seq}`, timeoutMs);
  }

  waitForText(expected: string, timeoutMs = 10_000): Promise<true> {
    return waitForEvent(this, 'message', () => this.text === expected || undefined, `text "${expected.slice(0, 40)}"`, timeoutMs);
  }

  /** Waits until `check` holds, re-checking after every message and on close. */
  waitFor<T>(check: () => T | undefined | false, what: string, timeoutMs = 10_000): Promise<T> {
    return waitForEvent(this, 'change', check, what, timeoutMs);
  }

  /**
   * How message `seq` ended: 'acked', or `closed <code> <reason>` when the relay closed the
   * connection first (what the ownership tests compare against).
   */
  ackedOrClosed(seq = this.seq, timeoutMs = 10_000): Promise<string> {
    return Promise.race([
      this.waitForAck(seq, timeoutMs).then(() => 'acked'),
      this.waitClosed(timeoutMs).then((c) => `closed ${c.code} ${c.reason}`),
    ]);
  }

  waitClosed(timeoutMs = 10_000): Promise<CloseInfo> {
    if (this.closeInfo) return Promise.resolve(this.closeInfo);
    return waitForEvent(this, 'close', () => this.closeInfo ?? undefined, 'close', timeoutMs);
  }

  close(): Promise<CloseInfo> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close();
    return this.waitClosed();
  }

  private onFrame(frame: Uint8Array): void {
    const msg = decodeMessage(frame);
    this.received.push(msg);
    switch (msg.type) {
      case 'sync-step-1':
        if (this.options.answerSync ?? true) {
          this.sendMessage({ type: 'sync-step-2', update: Y.encodeStateAsUpdate(this.doc, msg.stateVector) });
        }
        break;
      case 'sync-step-2':
        Y.applyUpdate(this.doc, msg.update, REMOTE);
        this.gotStep2 = true;
        break;
      case 'update':
        Y.applyUpdate(this.doc, msg.update, REMOTE);
        break;
      case 'ack':
        this.ackedSeq = Math.max(this.ackedSeq, msg.seq);
        this.lastAck = msg;
        break;
      case 'error':
        this.errors.push(msg);
        break;
      default:
        break;
    }
    this.emit('message', msg);
    this.emit('change');
  }
}

/** The awareness states `client` has received so far (every awareness message applied in order). */
export function awarenessStatesSeen(client: ProtocolClient): Map<number, Record<string, unknown>> {
  const awareness = new awarenessProtocol.Awareness(new Y.Doc());
  awareness.setLocalState(null);
  for (const m of client.received) if (m.type === 'awareness') awarenessProtocol.applyAwarenessUpdate(awareness, m.update, 'relay');
  return awareness.getStates() as Map<number, Record<string, unknown>>;
}
