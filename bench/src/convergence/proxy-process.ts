/**
 * The partitionable, byte-counting TCP proxy between the relays, as its own process (a
 * network element: the bench process's event loop, busy decoding what the relays send its
 * clients, must not delay the relays' traffic). Started by proxy.ts; one listener per route
 * (127.0.0.1, port 0) forwards to 127.0.0.1:<target port>.
 *
 * Partitioned: every live connection is reset (both sides) and new ones are accepted and
 * reset at once (a refused connection, as a relay sees it). Healed: bytes pass through.
 *
 * Every connection is counted on its own: the HTTP upgrade (request head one way, response
 * head the other) apart from what follows it (WebSocket frames: the payload), the request
 * path (which names the document of a per-document peer link), when the `101` response was
 * forwarded (the link is up), and when bytes last moved.
 */
import net from 'node:net';
import { epochMs } from './clock.js';
import type { ConnectionStats, ProxyReply, ProxyRequest } from './proxy-protocol.js';

interface Route {
  name: string;
  targetPort: number;
  server: net.Server;
}

interface Tracked {
  stats: ConnectionStats;
  client: net.Socket;
  upstream: net.Socket;
}

const HEAD_END = Buffer.from('\r\n\r\n');
/** Heads longer than this are not HTTP upgrades; counting them as payload from there on. */
const MAX_HEAD_BYTES = 64 * 1024;

let partitioned = false;
let healedAt = 0;
/** Connections accepted since the last heal (or start), live or closed. */
let connections: Tracked[] = [];
/** Connection attempts refused since the last partition began. */
let refused = 0;

function send(reply: ProxyReply): void {
  process.send!(reply);
}

function reset(socket: net.Socket): void {
  if (socket.destroyed) return;
  socket.resetAndDestroy();
}

/** Forwards `from` → `to`, counting the head (up to the blank line) apart from the rest. */
function forward(from: net.Socket, to: net.Socket, t: Tracked, direction: 'toTarget' | 'toClient'): void {
  let head: Buffer | null = Buffer.alloc(0);
  from.on('data', (chunk: Buffer) => {
    const s = t.stats;
    const now = epochMs();
    s.lastByteAt = now;
    let payload = chunk.length;
    if (head !== null) {
      const joined = Buffer.concat([head, chunk]);
      const end = joined.indexOf(HEAD_END);
      if (end === -1 && joined.length < MAX_HEAD_BYTES) {
        head = joined;
        payload = 0;
        s.head[direction] += chunk.length;
      } else {
        const headLength = end === -1 ? joined.length - chunk.length : end + HEAD_END.length;
        const inThisChunk = headLength - head.length;
        s.head[direction] += inThisChunk;
        payload = chunk.length - inThisChunk;
        const firstLine = joined.subarray(0, Math.min(joined.indexOf('\r\n'), 512)).toString('latin1');
        if (direction === 'toTarget') {
          s.requestLine = firstLine;
        } else {
          s.status = Number(/^HTTP\/\d\.\d (\d{3})/.exec(firstLine)?.[1] ?? 0);
          if (s.status === 101) s.upAt = now;
        }
        head = null;
      }
    }
    s.payload[direction] += payload;
    if (!to.write(chunk)) from.pause();
  });
  to.on('drain', () => from.resume());
  from.on('end', () => to.end());
}

function accept(route: Route, client: net.Socket): void {
  if (partitioned) {
    refused++;
    client.on('error', () => {});
    reset(client);
    return;
  }
  client.setNoDelay(true);
  const upstream = net.connect({ host: '127.0.0.1', port: route.targetPort, noDelay: true });
  const t: Tracked = {
    client,
    upstream,
    stats: {
      route: route.name,
      openedAt: epochMs(),
      closedAt: 0,
      requestLine: '',
      status: 0,
      upAt: 0,
      lastByteAt: 0,
      head: { toTarget: 0, toClient: 0 },
      payload: { toTarget: 0, toClient: 0 },
    },
  };
  connections.push(t);
  const close = (): void => {
    if (t.stats.closedAt === 0) t.stats.closedAt = epochMs();
    reset(client);
    reset(upstream);
  };
  client.on('error', close);
  upstream.on('error', close);
  client.on('close', () => {
    if (t.stats.closedAt === 0) t.stats.closedAt = epochMs();
    if (!upstream.writableEnded) upstream.end();
  });
  upstream.on('close', () => {
    if (t.stats.closedAt === 0) t.stats.closedAt = epochMs();
    if (!client.writableEnded) client.end();
  });
  forward(client, upstream, t, 'toTarget');
  forward(upstream, client, t, 'toClient');
}

async function listen(name: string, targetPort: number): Promise<Route> {
  const route: Route = { name, targetPort, server: net.createServer() };
  route.server.on('connection', (socket) => accept(route, socket));
  await new Promise<void>((resolve) => route.server.listen(0, '127.0.0.1', resolve));
  return route;
}

const specs = JSON.parse(process.argv[2] ?? '[]') as { name: string; targetPort: number }[];
const routes = await Promise.all(specs.map((s) => listen(s.name, s.targetPort)));
send({ type: 'ready', ports: Object.fromEntries(routes.map((r) => [r.name, (r.server.address() as net.AddressInfo).port])) });

process.on('message', (req: ProxyRequest) => {
  switch (req.type) {
    case 'partition': {
      partitioned = true;
      refused = 0;
      for (const t of connections) {
        if (t.stats.closedAt === 0) t.stats.closedAt = epochMs();
        reset(t.client);
        reset(t.upstream);
      }
      send({ id: req.id, type: 'partitioned', at: epochMs() });
      return;
    }
    case 'heal': {
      const refusedWhilePartitioned = refused;
      connections = connections.filter((t) => t.stats.closedAt === 0);
      partitioned = false;
      healedAt = epochMs();
      send({ id: req.id, type: 'healed', at: healedAt, refusedWhilePartitioned });
      return;
    }
    case 'stats': {
      const matching = connections.filter((t) => t.stats.requestLine.includes(req.pathContains));
      send({ id: req.id, type: 'stats', at: epochMs(), healedAt, partitioned, refused, connections: matching.map((t) => t.stats) });
      return;
    }
    case 'forget': {
      // Drops closed connections from the books (between measurements).
      connections = connections.filter((t) => t.stats.closedAt === 0);
      send({ id: req.id, type: 'forgotten' });
      return;
    }
  }
});

// The bench went away: so does the proxy.
process.on('disconnect', () => process.exit(0));
