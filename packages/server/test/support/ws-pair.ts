import { WebSocket, WebSocketServer } from 'ws';

/**
 * Two connected `ws` sockets on loopback (port 0): the client's end and the accepted one. The
 * listening socket is closed once they are connected.
 */
export async function wsSocketPair(): Promise<{ client: WebSocket; served: WebSocket }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise<void>((resolve) => wss.once('listening', resolve));
  const port = (wss.address() as { port: number }).port;
  const accepted = new Promise<WebSocket>((resolve) => wss.once('connection', resolve));
  const client = new WebSocket(`ws://127.0.0.1:${port}`);
  await new Promise<void>((resolve, reject) => {
    client.once('open', () => resolve());
    client.once('error', reject);
  });
  const served = await accepted;
  wss.close();
  return { client, served };
}
