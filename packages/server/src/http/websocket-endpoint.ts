import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { AuthError, CapsyncError, CloseCode, MUX_PATH, ProtocolError, closeCodeFor, closeReasonFor, docNameFromPath, parseSubdocStorageName } from '@capsync/core';
import type { AccessGrant, Principal } from '../auth/access.js';
import { RELAY_SUBJECT_PREFIX } from '../auth/relay-credential.js';
import { selectProtocol, tokenFromRequest } from '../auth/token-from-request.js';
import { redactUrl } from '../auth/url-token.js';
import { LOCKS_PATH } from '../locks/lock-connection.js';
import { MESH_PATH } from '../mesh/mesh-connection.js';
import { RELAY_QUERY } from '../mesh/peer-socket.js';
import { batchedSocket } from './batched-socket.js';
import type { MuxConnection } from '../mux/mux-connection.js';
import type { PeerMuxSocket } from '../mesh/peer-mux-socket.js';
import type { RelayConnection } from '../relay/connection.js';
import type { Relay } from '../relay/relay.js';
import type { ConnectionLimits } from './connection-limits.js';
import type { OriginPolicy } from './origin-policy.js';
import { watchLiveness } from './connection-liveness.js';

/**
 * Accepts WebSocket upgrades at `/<docName>`, the lock and mesh endpoints, and the multiplexed
 * endpoint `/.capsync/mux` (authenticated here, each document authorized when opened on it),
 * and hands authorized sockets to the relay.
 * A refused upgrade (bad name, bad token) is still completed and then closed with a named
 * code and reason, because browsers cannot read the HTTP status of a failed handshake. So is
 * one over a connection cap (1013; peer relays are exempt) or from a browser origin the policy
 * refuses (4403).
 */
export function webSocketEndpoint(
  relay: Relay,
  edge: { origins: OriginPolicy; limits: ConnectionLimits },
  prefix = '',
): { wss: WebSocketServer; handleUpgrade: UpgradeHandler } {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: relay.options.maxMessageBytes,
    perMessageDeflate: false,
    handleProtocols: (offered) => selectProtocol(offered),
  });

  const handleUpgrade: UpgradeHandler = (req, socket, head) => {
    // The request stays as it came (an app's other upgrade listeners see it too): the path
    // under the prefix goes along on its own.
    const url = underPrefix(req.url ?? '/', prefix);
    if (url === null) return false;
    // Sockets of the relay's own server are counted from their accept; those of an app's server
    // it is attached to, from here (the app's other requests are the app's to bound).
    edge.limits.admitOnce(req.socket);
    socket.on('error', () => socket.destroy());
    authorizeAndAccept(req, url, socket, head).catch((err: unknown) => {
      // An app's own listener that took this socket too (ws refuses a second handshake), or
      // any other failure: this socket's problem only, never an unhandled rejection.
      relay.logger.warn({ err, url: redactUrl(url) }, 'accepting a WebSocket upgrade failed');
      socket.destroy();
    });
    return true;
  };

  async function authorizeAndAccept(req: IncomingMessage, url: string, socket: Duplex, head: Buffer): Promise<void> {
    if (relay.isClosing) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n');
      return;
    }
    let docName = '';
    let failure: CapsyncError | null = null;
    let grant: AccessGrant | undefined;
    let principal: Principal | undefined;
    /** A plain document socket's credential (live permissions: refreshed, re-checked). */
    let docPrincipal: Principal | undefined;
    try {
      const origin = req.headers.origin;
      if (!edge.origins.allows(origin, req.headers.host)) throw edge.origins.refusal(origin!);
      // With --mux off the path is a reserved document name, refused 4404 as by an older relay.
      const reservedPaths = relay.options.mux ? [LOCKS_PATH, MESH_PATH, MUX_PATH] : [LOCKS_PATH, MESH_PATH];
      docName = reservedPaths.find((reserved) => isPath(url, reserved)) ?? docNameOfPath(url);
      if (docName === MUX_PATH) {
        principal = await relay.access.authenticate(tokenFromRequest(req));
        // A peer relay's socket (see Relay.connectMux): the credential must be the relay's it names.
        assertPeerIdentity(principal, peerIdOf(url));
      } else {
        const subdoc = parseSubdocStorageName(docName);
        // A subdocument has its parent's permission. Clients reach it only as a session of its
        // parent on /.capsync/mux; a peer relay replicates it by its stored name, as any document.
        // authorize() in two steps, to keep the credential (see Relay.connect).
        docPrincipal = await relay.access.authenticate(tokenFromRequest(req));
        grant = await relay.access.authorizeDoc(docPrincipal, subdoc?.parent ?? docName);
        if (subdoc && !grant.relay) throw new ProtocolError('invalid-doc-name', 'invalid document name: names under .capsync/ are reserved');
        if (docName === MESH_PATH && !grant.relay) throw new AuthError('forbidden', 'the mesh endpoint needs a relay credential');
        assertPeerIdentity(grant, peerIdOf(url));
      }
      // The caps are checked after authorization: a peer relay opens one link per shared
      // document, so its links do not count (else documents past the cap stop replicating).
      if ((grant ?? principal)?.relay) edge.limits.exempt(req.socket);
      const overCap = edge.limits.refuse(req.socket);
      if (overCap) throw overCap;
    } catch (err) {
      failure = err instanceof CapsyncError ? err : new CapsyncError('internal', 'internal error');
      if (!(err instanceof CapsyncError)) relay.logger.error({ err }, 'authorizing a connection failed');
    }
    if (socket.destroyed) return;
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      const who = grant ?? principal;
      if (failure || !who || relay.isClosing) {
        const err = failure ?? new CapsyncError('shutting-down', 'relay is shutting down');
        relay.metrics.refusals.inc({ reason: err.code });
        relay.logger.info({ code: err.code, msg: err.message, url: redactUrl(url) }, 'refusing connection');
        ws.close(closeCodeFor(err.code), closeReasonFor(err.code, err.message));
        return;
      }
      // A peer relay's links are not one client's share of the unsent-bytes budget.
      const address = who.relay ? undefined : (req.socket.remoteAddress ?? '');
      const endpoint = docName === LOCKS_PATH ? 'locks' : docName === MESH_PATH ? 'mesh' : docName === MUX_PATH ? 'mux' : 'doc';
      relay.metrics.sockets.inc({ endpoint });
      ws.once('close', () => relay.metrics.sockets.dec({ endpoint }));
      if (principal) serveMux(relay, ws, principal, address, peerIdOf(url));
      else if (docName === LOCKS_PATH) serveLocks(relay, ws, grant!, address);
      else if (docName === MESH_PATH) serveMesh(relay, ws);
      else serve(relay, ws, docName, grant!, peerIdOf(url), address, docPrincipal);
    });
  }

  return { wss, handleUpgrade };
}

/**
 * Takes an HTTP upgrade request if its path is the relay's (under its path prefix): true when it
 * took it (and the socket is the relay's from then on), false to leave it to another handler.
 */
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => boolean;

/**
 * Sends `server`'s upgrade requests to the relay. Those outside its prefix are left to the
 * server's other listeners (an app's), or answered 404 with `refuseOthers` (the relay's own server).
 */
export function attachWebSocketEndpoint(server: Server, handleUpgrade: UpgradeHandler, refuseOthers = false): () => void {
  const listener = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (!handleUpgrade(req, socket, head) && refuseOthers) socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
  };
  server.on('upgrade', listener);
  return () => server.off('upgrade', listener);
}

/**
 * `url` with `prefix` (a path like "/collab", or "") taken off, or null when it is not under it.
 * "/collab" and "/collab/..." are under "/collab"; "/collaborate" is not.
 */
export function underPrefix(url: string, prefix: string): string | null {
  if (!prefix) return url;
  if (!url.startsWith(prefix)) return null;
  const rest = url.slice(prefix.length);
  if (rest === '' || rest.startsWith('?')) return '/' + rest;
  return rest.startsWith('/') ? rest : null;
}

/**
 * Wires an accepted socket to the relay. A function of its own so the socket's listeners
 * close over these few values only, not over the upgrade request (which would then stay
 * in memory, headers and all, for the life of every connection).
 */
function serve(relay: Relay, ws: WebSocket, docName: string, grant: AccessGrant, peerId: string | undefined, address: string | undefined, principal: Principal | undefined): void {
  giveTooBigAReason(ws, relay.options.maxMessageBytes);
  wire(relay, ws, relay.connect(ws, docName, grant, peerId, address, principal), docName);
}

/** The multiplexed endpoint: documents are authorized as they are opened (see MuxConnection). */
function serveMux(relay: Relay, ws: WebSocket, principal: Principal, address: string | undefined, peerId: string | undefined): void {
  giveTooBigAReason(ws, relay.options.maxMessageBytes);
  // Its sessions' frames of one tick leave together (batchedSocket); a peer relay's socket too.
  wire(relay, ws, relay.connectMux(batchedSocket(ws), principal, address, peerId), MUX_PATH);
}

/** Feeds a document or multiplexed socket's frames to its connection, and watches it. */
function wire(relay: Relay, ws: WebSocket, conn: RelayConnection | MuxConnection | PeerMuxSocket, docName: string): void {
  watchLiveness(ws, conn, relay.options.connectionTimeoutMs);
  ws.on('message', (data, isBinary) => conn.receive(toBytes(data as Buffer), isBinary));
  ws.on('close', () => relay.disconnected(conn));
  ws.on('error', (err: Error & { code?: string }) => {
    if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
      relay.metrics.refusals.inc({ reason: 'message-too-large' });
      relay.logger.info({ doc: docName }, 'closing connection: frame over the size limit');
    } else {
      relay.metrics.refusals.inc({ reason: 'bad-message' });
      relay.logger.info({ doc: docName, err: err.message }, 'WebSocket protocol error');
    }
  });
}

/**
 * The lock endpoint; a connection without write access may not take locks. `address`: the
 * client's (the TCP peer's, as the connection caps count it), for `--max-leases-per-address`.
 */
function serveLocks(relay: Relay, ws: WebSocket, grant: AccessGrant, address: string | undefined): void {
  giveTooBigAReason(ws, relay.options.maxMessageBytes);
  const conn = relay.connectLocks(ws, grant, address);
  watchLiveness(ws, conn, relay.options.connectionTimeoutMs);
  ws.on('close', () => relay.disconnected(conn));
  if (grant.permission !== 'write') {
    conn.fail(new CapsyncError('forbidden', 'taking locks needs write access to ' + LOCKS_PATH));
    return;
  }
  ws.on('message', (data, isBinary) => conn.receive(toBytes(data as Buffer), isBinary));
  ws.on('error', () => relay.metrics.refusals.inc({ reason: 'bad-message' }));
}

/** A peer relay's control link: liveness and ids (see MeshConnection). */
function serveMesh(relay: Relay, ws: WebSocket): void {
  giveTooBigAReason(ws, relay.options.maxMessageBytes);
  const conn = relay.connectMesh(ws);
  watchLiveness(ws, conn, relay.options.connectionTimeoutMs);
  ws.on('close', () => relay.disconnected(conn));
  ws.on('message', (data) => conn.receive(toBytes(data as Buffer)));
  ws.on('error', () => relay.metrics.refusals.inc({ reason: 'bad-message' }));
}

/**
 * The document a plain socket's path names (docNameFromPath), or a subdocument's reserved
 * storage name (`.capsync/sub/…`), which only a peer relay may open: checked once authorized.
 */
function docNameOfPath(url: string): string {
  try {
    return docNameFromPath(url);
  } catch (err) {
    let decoded: string;
    try {
      decoded = decodeURIComponent((url.split('?')[0] ?? '').replace(/^\//, ''));
    } catch {
      throw err;
    }
    if (parseSubdocStorageName(decoded)) return decoded;
    throw err;
  }
}

function isPath(url: string | undefined, reserved: string): boolean {
  const path = (url ?? '').split('?')[0] ?? '';
  return path === '/' + reserved || path === '/' + encodeURIComponent(reserved);
}

/** The relay id a peer relay's document link names in its query (`?relay=<id>`). */
/**
 * A minted relay credential names its relay (`sub` = "relay:<id>"): a connection presenting
 * it may only speak as that relay, so one relay's credential cannot pose as another peer.
 */
function assertPeerIdentity(grant: Pick<AccessGrant, 'relay' | 'subject'>, peerId: string | undefined): void {
  const named = grant.subject?.startsWith(RELAY_SUBJECT_PREFIX) ? grant.subject.slice(RELAY_SUBJECT_PREFIX.length) : undefined;
  if (grant.relay && named !== undefined && peerId !== undefined && peerId !== named) {
    throw new AuthError('forbidden', `this relay credential belongs to relay "${named}", not "${peerId}"`);
  }
}

function peerIdOf(url: string | undefined): string | undefined {
  const q = (url ?? '').indexOf('?');
  if (q < 0) return undefined;
  return new URLSearchParams(url!.slice(q + 1)).get(RELAY_QUERY) || undefined;
}

/**
 * ws rejects an oversized frame while reading its header (before buffering it), but closes
 * with a bare 1009 and no reason. Every capsync close names its error, so add it here.
 */
function giveTooBigAReason(ws: WebSocket, limit: number): void {
  const close = ws.close.bind(ws);
  ws.close = ((code?: number, reason?: string | Buffer) =>
    close(
      code,
      code === CloseCode.MessageTooBig && !reason ? closeReasonFor('message-too-large', `frame over ${limit} bytes`) : reason,
    )) as typeof ws.close;
}

function toBytes(data: Buffer | ArrayBuffer | Buffer[]): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return data;
}
