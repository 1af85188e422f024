import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { ChunkAssembler, MUX_PATH, PROTOCOL_VERSION, batchedSize, decodeMessage, decodeMuxFrame, encodeBatch, encodeMessage, encodeMuxFrame, readBatch, type Message, type SessionOpenMessage } from '@capsync/core';
import { waitForEvent } from './wait.js';
import { WireDocClient, type CloseInfo } from './wire-doc-client.js';

export interface MuxClientOptions {
  /** Sent as `?token=`. */
  token?: string;
  protocols?: string[];
  headers?: Record<string, string>;
  /** Say hello on the control session at once. Default true. */
  hello?: boolean;
  /** More hello capabilities (e.g. an owner key). */
  capabilities?: string[];
  /** The protocol version the hello claims. Default PROTOCOL_VERSION. */
  protocolVersion?: number;
  /** More query parameters (a peer relay names itself with `relay`). */
  query?: Record<string, string>;
}

export interface MuxOpenOptions {
  /** Capabilities of this session alone (a document's `writes:<client id>`). */
  capabilities?: string[];
  kind?: SessionOpenMessage['kind'];
  subdoc?: string;
  /** Send sync step 1 right after the open (without waiting for session-opened). Default true. */
  sync?: boolean;
  /** Reply to the relay's sync step 1 with our state. Default true. */
  answerSync?: boolean;
}

/**
 * A wire-level client of the relay's multiplexed endpoint (`/.capsync/mux`) for tests: one real
 * WebSocket, its hello on the control session (sid 0), and documents opened on it as sessions
 * (MuxDocSession: the same document client as ProtocolClient, over one sid). It opens odd sids
 * in order, as the dialling side must. Frames the relay sends must decode (a test fails loudly
 * otherwise). Events: 'control' (Message on sid 0), 'close' (CloseInfo), 'change'.
 */
export class MuxClient extends EventEmitter {
  /** Messages received on the control session. */
  readonly control: Message[] = [];
  closeInfo: CloseInfo | null = null;
  /** Batches of frames received (the relay sends them only if the hello announced MUX_BATCH_CAPABILITY). */
  batchesReceived = 0;
  /** Bytes of chunk pieces received (what a client that credits chunks credits). */
  chunkBytes = 0;
  /** Credit every chunk as it comes (a hello with MUX_FLOW_CAPABILITY promised to); off: the test credits. */
  autoCredit = false;
  /** While sendBatched runs: the frames it collects. */
  private batching: Uint8Array[] | null = null;
  private readonly sessions = new Map<number, MuxDocSession>();
  private readonly chunks = new ChunkAssembler();
  private nextSid = 1;

  private constructor(readonly ws: WebSocket) {
    super();
    this.setMaxListeners(1000);
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: Buffer) => this.onMessage(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)));
    ws.on('close', (code, reason) => {
      this.closeInfo = { code, reason: reason.toString() };
      for (const s of this.sessions.values()) s.ended(this.closeInfo);
      this.emit('close', this.closeInfo);
      this.emit('change');
    });
    ws.on('error', () => {});
  }

  /** Connects to `${url}/.capsync/mux` (`url`: the relay's ws base URL) and says hello. */
  static async connect(url: string, options: MuxClientOptions = {}): Promise<MuxClient> {
    const params = new URLSearchParams({ ...(options.token ? { token: options.token } : {}), ...options.query });
    const query = params.size > 0 ? `?${params}` : '';
    const ws = new WebSocket(`${url}/${MUX_PATH}${query}`, options.protocols ?? [], { headers: options.headers ?? {}, perMessageDeflate: false });
    const client = new MuxClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('close', (code, reason) => reject(new Error(`closed before open: ${code} ${reason.toString()}`)));
    });
    if (options.hello ?? true) {
      client.sendControl({ type: 'hello', protocolVersion: options.protocolVersion ?? PROTOCOL_VERSION, capabilities: ['ack', 'error', ...(options.capabilities ?? [])] });
    }
    return client;
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Opens document `name` as the next session (no waiting: frames may follow the open at once). */
  open(name: string, options: MuxOpenOptions = {}): MuxDocSession {
    const sid = this.nextSid;
    this.nextSid += 2;
    const session = new MuxDocSession(this, sid, name, options.answerSync ?? true);
    this.sessions.set(sid, session);
    this.sendControl({ type: 'session-open', sid, kind: options.kind ?? 'doc', name, subdoc: options.subdoc ?? '', capabilities: options.capabilities ?? [] });
    if (options.sync ?? true) session.sendMessage({ type: 'sync-step-1', stateVector: Y.encodeStateVector(session.doc) });
    return session;
  }

  /** Opens document `name` and waits for its initial sync. */
  async synced(name: string, options: MuxOpenOptions = {}): Promise<MuxDocSession> {
    const session = this.open(name, options);
    await session.waitSynced();
    return session;
  }

  sendControl(msg: Message): void {
    this.sendFrame(0, encodeMessage(msg));
  }

  /** Sends `body` as a frame of session `sid` (anything, for hostile input). */
  sendFrame(sid: number, body: Uint8Array): void {
    this.sendRaw(encodeMuxFrame(sid, body));
  }

  /** Sends one WebSocket message (inside sendBatched: one frame of the batch). */
  sendRaw(data: Uint8Array | string): void {
    if (this.batching && typeof data !== 'string') this.batching.push(data);
    else if (this.isOpen) this.ws.send(data);
  }

  /** Sends the frames that `send` sends (through this client's methods) as one batch message. */
  sendBatched(send: () => void): void {
    const frames: Uint8Array[] = [];
    this.batching = frames;
    try {
      send();
    } finally {
      this.batching = null;
    }
    this.sendRaw(encodeBatch(frames, frames.reduce((n, f) => n + batchedSize(f), 0)));
  }

  /** The relay's hello on the control session. */
  waitHello(timeoutMs = 10_000): Promise<Extract<Message, { type: 'hello' }>> {
    return this.waitFor(() => this.control.find((m): m is Extract<Message, { type: 'hello' }> => m.type === 'hello'), 'the relay hello', timeoutMs);
  }

  /** Waits until `check` holds, re-checking after every control message and on close. */
  waitFor<T>(check: () => T | undefined | false, what: string, timeoutMs = 10_000): Promise<T> {
    return waitForEvent(this, 'change', check, what, timeoutMs);
  }

  waitClosed(timeoutMs = 10_000): Promise<CloseInfo> {
    return this.waitFor(() => this.closeInfo ?? undefined, 'the socket to close', timeoutMs);
  }

  close(): Promise<CloseInfo> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close();
    return this.waitClosed();
  }

  /** The session closed itself (MuxDocSession.close): tell the relay. */
  sessionClosed(sid: number, code: number, reason: string): void {
    this.sessions.delete(sid);
    this.sendControl({ type: 'session-close', sid, code, reason });
  }

  private onMessage(message: Uint8Array): void {
    const frames = readBatch(message);
    if (frames) this.batchesReceived++;
    for (const frame of frames ?? [message]) this.onFrame(frame);
  }

  private onFrame(frame: Uint8Array): void {
    const { sid, body } = decodeMuxFrame(frame);
    if (sid !== 0 && body[0] === 100 && body[1] === 14) {
      this.chunkBytes += body.byteLength - 3;
      if (this.autoCredit) this.sendControl({ type: 'chunk-credit', bytes: body.byteLength - 3 });
      this.emit('change');
    }
    if (sid !== 0) {
      // A frame of a session closed here moments ago is dropped, as the relay drops ours.
      const session = this.sessions.get(sid);
      if (!session) return;
      // The relay sends a large message as chunks (FairSocket).
      const message = this.chunks.push(sid, body);
      if (message) session.deliver(message);
      return;
    }
    const msg = decodeMessage(body);
    this.control.push(msg);
    if (msg.type === 'session-opened') this.sessions.get(msg.sid)?.granted(msg.permission);
    if (msg.type === 'session-close') {
      const session = this.sessions.get(msg.sid);
      this.sessions.delete(msg.sid);
      session?.ended({ code: msg.code, reason: msg.reason });
    }
    this.emit('control', msg);
    this.emit('change');
  }
}

/**
 * One document opened on a MuxClient: the document client of ProtocolClient (WireDocClient) over
 * one sid. `closeInfo` is the relay's `session-close` (or the socket's close).
 */
export class MuxDocSession extends WireDocClient {
  /** The permission of the relay's `session-opened`, null until then. */
  permission: 'read' | 'write' | null = null;

  constructor(
    readonly mux: MuxClient,
    readonly sid: number,
    readonly name: string,
    answerSync: boolean,
  ) {
    super(answerSync);
  }

  protected transmit(bytes: Uint8Array): void {
    this.mux.sendFrame(this.sid, bytes);
  }

  protected get isOpen(): boolean {
    return this.closeInfo === null && this.mux.isOpen;
  }

  /** Sends raw bytes as one message of this session (hostile input). */
  sendRaw(bytes: Uint8Array): void {
    this.transmit(bytes);
  }

  waitOpened(timeoutMs = 10_000): Promise<'read' | 'write'> {
    return this.waitFor(() => this.permission ?? undefined, `session-opened of ${this.name}`, timeoutMs);
  }

  /** Closes this session (a `session-close`); the socket stays. */
  async close(code = 1000, reason = ''): Promise<CloseInfo> {
    if (!this.closeInfo) {
      this.mux.sessionClosed(this.sid, code, reason);
      this.onClose({ code, reason });
    }
    return this.closeInfo!;
  }

  /** MuxClient: a frame of this session. */
  deliver(body: Uint8Array): void {
    if (!this.closeInfo) this.onFrame(body);
  }

  /** MuxClient: the relay accepted the open. */
  granted(permission: 'read' | 'write'): void {
    this.permission = permission;
    this.emit('change');
  }

  /** MuxClient: the relay closed this session, or the socket closed. */
  ended(info: CloseInfo): void {
    this.onClose(info);
  }
}
