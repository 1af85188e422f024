/**
 * A raw protocol client of the cluster benchmark: one WebSocket for one document on one
 * instance. Like the relay benchmark's LoadClient (../load-client.ts), it owns a Y.Doc only to
 * make its own updates (a marker appended to a Y.Text, see ../wire.ts) and never applies what
 * it receives: it scans the update frames for markers and reports them.
 */
import WebSocket from 'ws';
import * as Y from 'yjs';
import { closeAll, nowMicros } from '../load-client.js';
import { marker, scanMarkers } from '../wire.js';
import type { Dialect } from './dialects.js';

const HANDSHAKE_TIMEOUT_MS = 20_000;

/** What a client reports about what it receives. */
export interface ClusterSink {
  /** Update `seq` of client `sender`, sent at `sendMicros`, reached `receiver` at `now`. */
  delivered(receiver: ClusterClient, sender: number, seq: number, sendMicros: number, now: number): void;
  /** The server closed `receiver`'s connection. */
  closed(receiver: ClusterClient, code: number): void;
}

/** Opens a socket for `doc` and resolves once the server registered it (its sync step 1 came). */
export function connectClient(dialect: Dialect, port: number, doc: string): Promise<WebSocket> {
  const url = dialect.url(port, doc);
  const ws = new WebSocket(url, { perMessageDeflate: false, skipUTF8Validation: true });
  ws.binaryType = 'nodebuffer';
  return new Promise<WebSocket>((resolve, reject) => {
    const fail = (err: Error): void => {
      clearTimeout(timer);
      ws.terminate();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error(`no sync step 1 for ${doc} from ${url} within ${HANDSHAKE_TIMEOUT_MS} ms`)), HANDSHAKE_TIMEOUT_MS);
    const onMessage = (data: Buffer): void => {
      if (!dialect.registered(data, doc)) return;
      clearTimeout(timer);
      ws.off('message', onMessage);
      ws.removeAllListeners('error');
      ws.removeAllListeners('close');
      ws.on('error', () => {}); // a failed socket shows up as a close (or missing deliveries)
      resolve(ws);
    };
    ws.on('message', onMessage);
    ws.once('open', () => {
      for (const m of dialect.hello(doc)) ws.send(m);
    });
    ws.once('error', fail);
    ws.once('close', (code) => fail(new Error(`closed during handshake (${code})`)));
  });
}

export class ClusterClient {
  private readonly ydoc = new Y.Doc();
  private readonly text = this.ydoc.getText('t');
  private lastUpdate: Uint8Array | null = null;
  /** Updates sent so far; the next one is `sent + 1`. */
  sent = 0;
  private sink: ClusterSink | null = null;
  private frameMicros = 0;

  constructor(
    /** Unique among the clients of a run: the sender id in markers. */
    readonly id: number,
    /** 0 or 1: which instance (relay, Hocuspocus) of the system it is connected to. */
    readonly instance: number,
    readonly doc: string,
    private readonly dialect: Dialect,
    private readonly ws: WebSocket,
  ) {
    this.ydoc.on('update', (update: Uint8Array) => (this.lastUpdate = update));
    ws.on('message', this.onMessage);
    ws.on('close', (code) => this.sink?.closed(this, code));
  }

  /** Where deliveries are reported (one recorder per level); null stops reporting. */
  reportTo(sink: ClusterSink | null): void {
    this.sink = sink;
  }

  /** Appends a marker stamped now and sends the update; the stamp, or -1 when the socket is gone. */
  send(): number {
    if (this.ws.readyState !== WebSocket.OPEN) return -1;
    const sendMicros = nowMicros();
    this.text.insert(this.text.length, marker(this.id, ++this.sent, sendMicros));
    const update = this.lastUpdate!;
    this.lastUpdate = null;
    this.ws.send(this.dialect.update(this.doc, update));
    return sendMicros;
  }

  async close(): Promise<void> {
    this.sink = null;
    this.ws.off('message', this.onMessage);
    await closeAll([this.ws]);
    this.ydoc.destroy();
  }

  private readonly onMessage = (data: Buffer): void => {
    if (!this.sink) return;
    const at = this.dialect.updateAt(data);
    if (at < 0) return;
    this.frameMicros = nowMicros();
    scanMarkers(data, at, this.onMarker);
  };

  private readonly onMarker = (sender: number, seq: number, sendMicros: number): void => {
    if (sender !== this.id) this.sink?.delivered(this, sender, seq, sendMicros, this.frameMicros);
  };
}

/** Connects `count` clients, at most `concurrency` handshakes at a time. */
export async function connectClients(
  count: number,
  concurrency: number,
  make: (i: number) => Promise<ClusterClient>,
): Promise<ClusterClient[]> {
  const clients: ClusterClient[] = new Array<ClusterClient>(count);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      clients[i] = await make(i);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  } catch (err) {
    await Promise.all(clients.filter(Boolean).map((c) => c.close()));
    throw err;
  }
  return clients;
}
