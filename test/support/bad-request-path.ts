import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { CloseInfo } from './protocol-client.js';
import { withTimeout } from './wait.js';

/**
 * Opens a WebSocket to `rawPath` exactly as written and resolves with the close frame the
 * relay answers with.
 *
 * A WebSocket client (ws, browsers) parses the URL first and so normalizes the path:
 * `/a/../b` becomes `/b`, `/%2e%2e` becomes `/`, `\` becomes `/`. Hostile clients need not,
 * so this speaks the handshake by hand to put path tricks on the wire verbatim. It only reads:
 * it expects the relay to close the connection without the client sending any frame.
 */
export async function closeForRawPath(httpUrl: string, rawPath: string, timeoutMs = 10_000): Promise<CloseInfo> {
  const { hostname, port } = new URL(httpUrl);
  const req = http.request({
    host: hostname,
    port,
    path: rawPath,
    headers: {
      Connection: 'Upgrade',
      Upgrade: 'websocket',
      'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
      'Sec-WebSocket-Version': '13',
    },
  });
  const upgraded = new Promise<{ socket: Duplex; head: Buffer }>((resolve, reject) => {
    req.once('upgrade', (_res, socket, head) => resolve({ socket, head }));
    req.once('response', (res) => reject(new Error(`upgrade refused with HTTP ${res.statusCode}`)));
    req.once('error', reject);
  });
  req.end();
  const { socket, head } = await withTimeout(upgraded, timeoutMs, `upgrade of ${rawPath}`);
  try {
    return await withTimeout(readCloseFrame(socket, head), timeoutMs, `close frame for ${rawPath}`);
  } finally {
    socket.destroy();
  }
}

/** Reads server frames (unmasked, RFC 6455 §5.2) until a close frame; returns its code and reason. */
function readCloseFrame(socket: Duplex, head: Buffer): Promise<CloseInfo> {
  return new Promise((resolve, reject) => {
    let buf = head;
    const tryParse = (): boolean => {
      for (;;) {
        if (buf.length < 2) return false;
        const opcode = buf[0]! & 0x0f;
        let len = buf[1]! & 0x7f;
        let offset = 2;
        if (len === 126) {
          if (buf.length < 4) return false;
          len = buf.readUInt16BE(2);
          offset = 4;
        } else if (len === 127) {
          if (buf.length < 10) return false;
          len = Number(buf.readBigUInt64BE(2));
          offset = 10;
        }
        if (buf.length < offset + len) return false;
        const payload = buf.subarray(offset, offset + len);
        buf = buf.subarray(offset + len);
        if (opcode === 0x8) {
          resolve({
            code: payload.length >= 2 ? payload.readUInt16BE(0) : 1005,
            reason: payload.subarray(2).toString('utf8'),
          });
          return true;
        }
      }
    };
    if (tryParse()) return;
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (tryParse()) cleanup();
    };
    const onEnd = () => {
      cleanup();
      reject(new Error('connection ended without a close frame'));
    };
    const cleanup = () => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', () => {});
  });
}
