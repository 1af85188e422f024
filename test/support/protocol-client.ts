import * as awarenessProtocol from 'y-protocols/awareness';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { PROTOCOL_VERSION } from '@capsync/core';
import { WireDocClient, type CloseInfo } from './wire-doc-client.js';

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

export type { CloseInfo } from './wire-doc-client.js';

/**
 * A minimal wire-level client for relay tests: speaks the protocol by hand over a real
 * WebSocket of its own (see WireDocClient for the document side).
 * Events: 'message' (Message), 'close' (CloseInfo), 'change' (after either).
 */
export class ProtocolClient extends WireDocClient {
  private constructor(
    readonly ws: WebSocket,
    options: ProtocolClientOptions,
  ) {
    super(options.answerSync ?? true);
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: Buffer) => this.onFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)));
    ws.on('close', (code, reason) => this.onClose({ code, reason: reason.toString() }));
    ws.on('error', () => {});
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

  protected transmit(bytes: Uint8Array): void {
    this.ws.send(bytes);
  }

  protected get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  sendRaw(data: Uint8Array | string): void {
    this.ws.send(data);
  }

  close(): Promise<CloseInfo> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close();
    return this.waitClosed();
  }
}

/** The awareness states `client` has received so far (every awareness message applied in order). */
export function awarenessStatesSeen(client: WireDocClient): Map<number, Record<string, unknown>> {
  const awareness = new awarenessProtocol.Awareness(new Y.Doc());
  awareness.setLocalState(null);
  for (const m of client.received) if (m.type === 'awareness') awarenessProtocol.applyAwarenessUpdate(awareness, m.update, 'relay');
  return awareness.getStates() as Map<number, Record<string, unknown>>;
}
