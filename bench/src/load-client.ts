/**
 * Load clients, kept cheap because they share two cores with the server under test:
 * a client owns a Y.Doc only to generate its own updates; it never applies what it
 * receives, it scans the frames for markers instead (see wire.ts).
 */
import WebSocket from 'ws';
import * as Y from 'yjs';
import { encodeUpdateMessage, isSyncStep1, isUpdateMessage, marker, scanMarkers } from './wire.js';

const HANDSHAKE_TIMEOUT_MS = 15_000;

/**
 * Opens a WebSocket to `url` and resolves once the server sent its sync step 1, i.e. once it
 * registered the connection with the document (the raw server sends the same greeting).
 */
export function connectRegistered(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url, { perMessageDeflate: false, skipUTF8Validation: true });
  ws.binaryType = 'nodebuffer';
  return new Promise<WebSocket>((resolve, reject) => {
    const fail = (err: Error): void => {
      clearTimeout(timer);
      ws.off('message', onMessage);
      ws.terminate();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error(`no sync step 1 from ${url} within ${HANDSHAKE_TIMEOUT_MS} ms`)), HANDSHAKE_TIMEOUT_MS);
    const onMessage = (data: Buffer): void => {
      if (!isSyncStep1(data)) return;
      clearTimeout(timer);
      ws.off('message', onMessage);
      resolve(ws);
    };
    ws.on('message', onMessage);
    ws.once('error', fail);
    ws.once('close', (code) => fail(new Error(`closed during handshake (${code})`)));
  }).then((open) => {
    open.removeAllListeners('error');
    open.removeAllListeners('close');
    open.on('error', () => {}); // a failed socket shows up as a close (or a missing delivery)
    return open;
  });
}

/** Opens `count` registered connections, at most `concurrency` handshakes at a time. */
export async function connectMany(urlFor: (i: number) => string, count: number, concurrency: number): Promise<WebSocket[]> {
  const sockets: WebSocket[] = new Array<WebSocket>(count);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      sockets[i] = await connectRegistered(urlFor(i));
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  } catch (err) {
    for (const ws of sockets) ws?.terminate();
    throw err;
  }
  return sockets;
}

/** Closes sockets and resolves once all of them are closed (terminating stragglers). */
export async function closeAll(sockets: WebSocket[], timeoutMs = 5_000): Promise<void> {
  await Promise.all(
    sockets.map(
      (ws) =>
        new Promise<void>((resolve) => {
          if (ws.readyState === WebSocket.CLOSED) return resolve();
          const timer = setTimeout(() => ws.terminate(), timeoutMs);
          ws.once('close', () => {
            clearTimeout(timer);
            resolve();
          });
          ws.close();
        }),
    ),
  );
}

/** What a load client reports about the updates it receives. */
export interface DeliverySink {
  /** An update of client `sender`, sent at `sendMicros`, reached `receiver` at `nowMicros`. */
  delivered(receiver: number, sender: number, sendMicros: number, nowMicros: number): void;
  /** `receiver` got one update message holding `markers` updates (its own echoes included) at `nowMicros`. */
  frame(receiver: number, markers: number, nowMicros: number): void;
  /** The server closed `receiver`'s connection while the level ran. */
  closed(receiver: number, code: number): void;
}

/** Microseconds on this process's monotonic clock (the clock of every marker). */
export function nowMicros(): number {
  return Math.round(performance.now() * 1000);
}

/** One of the clients editing the benchmark document. */
export class LoadClient {
  private readonly doc = new Y.Doc();
  private readonly text = this.doc.getText('t');
  private lastUpdate: Uint8Array | null = null;
  private seq = 0;
  private stopped = false;
  /** Receipt time of the frame being scanned. */
  private frameMicros = 0;

  constructor(
    readonly id: number,
    private readonly ws: WebSocket,
    private readonly sink: DeliverySink,
  ) {
    this.doc.on('update', (update: Uint8Array) => (this.lastUpdate = update));
    ws.on('message', this.onMessage);
    ws.on('close', (code) => {
      if (!this.stopped) sink.closed(id, code);
    });
  }

  /**
   * Appends a marker stamped with the current time and sends the update. Returns the stamp,
   * or -1 when the socket is gone.
   */
  send(): number {
    if (this.ws.readyState !== WebSocket.OPEN) return -1;
    const sendMicros = nowMicros();
    this.text.insert(this.text.length, marker(this.id, ++this.seq, sendMicros));
    const update = this.lastUpdate!;
    this.lastUpdate = null;
    this.ws.send(encodeUpdateMessage(update));
    return sendMicros;
  }

  /** Stops reporting and closes the connection. */
  async close(): Promise<void> {
    this.stopped = true;
    this.ws.off('message', this.onMessage);
    await closeAll([this.ws]);
    this.doc.destroy();
  }

  private readonly onMessage = (data: Buffer): void => {
    if (!isUpdateMessage(data)) return;
    this.frameMicros = nowMicros();
    this.sink.frame(this.id, scanMarkers(data, 2, this.onMarker), this.frameMicros);
  };

  private readonly onMarker = (sender: number, _seq: number, sendMicros: number): void => {
    // Servers that echo an update to its sender (the reference does) are not credited for it.
    if (sender !== this.id) this.sink.delivered(this.id, sender, sendMicros, this.frameMicros);
  };
}
