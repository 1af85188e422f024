// Over ~400 lines (2026-12-07): one tagged union of every wire message with its frame layout and
// capability helpers, kept together so the protocol reads in one place; split the capability
// helpers (incarnations, token refresh) into protocol/capabilities.ts next.
/**
 * The wire protocol: the standard y-websocket messages plus capsync's extension messages,
 * as a tagged union (the codec is in messages.ts).
 *
 * Frame layout (all binary, lib0 varint encoding):
 *   [0 sync][0 step1][varUint8Array stateVector]
 *   [0 sync][1 step2][varUint8Array update]
 *   [0 sync][2 update][varUint8Array update]
 *   [1 awareness][varUint8Array awarenessUpdate]
 *   [2 auth][0 permission-denied][varString reason]
 *   [3 query-awareness]
 *   [100 capsync][0 hello][varUint protocolVersion][varUint n][n x varString capability]
 *   [100 capsync][1 ack][varUint seq][varUint8Array stateVector]
 *   [100 capsync][2 error][varString code][varString message][varUint seq]
 *   [100 capsync][3 ping][varUint id]
 *   [100 capsync][4 pong][varUint id]
 *   [100 capsync][5 lock-request][varUint id][varUint op][varString key][varUint token]
 *                                [varUint ttlMs][varUint waitMs]([varString owner])
 *   [100 capsync][6 lock-reply][varUint id][varString code][varString message][varUint token]
 *                              [varUint ttlMs]
 *   [100 capsync][7 cp-set][varUint id][varString key][varUint token][varString json]
 *                          [varUint ifRev + 1, 0 = unconditional]([varString owner])
 *   [100 capsync][8 cp-reply][varUint id][varString code][varString message]
 *   [100 capsync][9 quorum-ack][varUint seq]
 *   [100 capsync][10 client-owners][varUint n][n x ([varString owner][varUint m][m x varUint clientId])]
 *   [100 capsync][11 session-open][varUint sid][varUint kind: 0 doc, 1 locks][varString name]
 *                                 [varString subdoc guid, '' for none][varUint n][n x varString capability]
 *   [100 capsync][12 session-opened][varUint sid][varUint permission: 0 read, 1 write]
 *   [100 capsync][13 session-close][varUint sid][varUint closeCode][varString reason]
 *   (kind 14 is kept for `chunk`, part of one large message of a session: issue 12 step P4;
 *    kind 15 for a batch of frames: protocol/mux-frame.ts)
 *   [100 capsync][16 chunk-credit][varUint bytes]
 *   [100 capsync][17 token-refresh][varString token]
 *   [100 capsync][18 permission][varUint permission: 0 read, 1 write]
 *   [100 capsync][19 incarnation][varUint incarnation]
 *
 * The session-* messages travel only on the control session (sid 0) of a multiplexed socket
 * (`/.capsync/mux`, see protocol/mux-frame.ts); on any other connection they are refused like
 * any message its endpoint does not take.
 *
 * Extension messages are only sent to a peer that first sent `hello`, so stock y-websocket
 * clients never see them. A field in parentheses is optional and last: it is written only
 * when set, so encodings without it (older peers) still decode.
 */
import { ProtocolError } from '../errors.js';
import type { ErrorCode } from '../errors.js';

/** Bumped on any incompatible change to the capsync extension messages. */
export const PROTOCOL_VERSION = 1;

/**
 * Hello capabilities of relay-to-relay links. A relay connecting to a peer announces
 * `relay` and `relay-id:<its id>`, and the peer answers with its own id, so both sides know
 * which relay is on the other end of a link (to avoid opening a second link for a document
 * that already has one, and to count quorum acknowledgements per relay).
 */
export const RELAY_CAPABILITY = 'relay';
export const RELAY_ID_PREFIX = 'relay-id:';

/** The relay id a hello announces (`relay-id:<id>`), or undefined. */
export function relayIdOf(hello: { capabilities: string[] }): string | undefined {
  const cap = hello.capabilities.find((c) => c.startsWith(RELAY_ID_PREFIX));
  return cap === undefined ? undefined : cap.slice(RELAY_ID_PREFIX.length) || undefined;
}

/**
 * Hello capability carrying a client's lock owner key (`owner:<key>`): a random secret of at
 * least 128 bits (22+ base64url characters) a capsync client makes once per `createClient()`
 * and announces on its lock and document connections. On a relay without a token subject
 * (an open relay) the relay derives the client's lock identity from it, so the client's
 * leases are its own across its connections and reconnects. Relays never log or echo it.
 */
export const OWNER_KEY_PREFIX = 'owner:';
/** Shortest and longest owner key a relay accepts (base64url characters). */
export const OWNER_KEY_MIN_LENGTH = 22;
export const OWNER_KEY_MAX_LENGTH = 128;

/**
 * A capsync client's hello capability naming the Yjs client id it writes under on this
 * connection (`writes:<id>`). A relay with auth claims for the writer's identity only the
 * client ids it declared: content under other ids it carries (another user's edits that this
 * relay has not received yet, e.g. after a failover or a relay crash) is accepted unclaimed,
 * so it is not attributed to the wrong user. Clients that declare nothing (stock y-websocket)
 * claim every new id they write under. At most MAX_DECLARED_WRITERS are read.
 */
export const WRITES_PREFIX = 'writes:';
export const MAX_DECLARED_WRITERS = 16;

/** The client ids a hello declares (see WRITES_PREFIX), or undefined when it declares none. */
export function declaredWritersOf(hello: { capabilities: string[] }): Set<number> | undefined {
  let ids: Set<number> | undefined;
  for (const c of hello.capabilities) {
    if (!c.startsWith(WRITES_PREFIX)) continue;
    const id = Number(c.slice(WRITES_PREFIX.length));
    if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) continue;
    (ids ??= new Set()).add(id);
    if (ids.size >= MAX_DECLARED_WRITERS) break;
  }
  return ids;
}

/**
 * Live permissions (token-refresh.ts). In a relay's hello: it takes `token-refresh` on this
 * connection (a plain document socket, or the control session of a multiplexed one), so a
 * client presents a fresh token there instead of reconnecting; a client never sends one to a
 * relay that did not say it. In a client's hello: it understands `permission` messages.
 */
export const TOKEN_REFRESH_CAPABILITY = 'token-refresh';

export const MessageType = {
  Sync: 0,
  Awareness: 1,
  Auth: 2,
  QueryAwareness: 3,
  Capsync: 100,
} as const;

export type LockOp = 'acquire' | 'renew' | 'release' | 'check';

export interface SyncStep1Message {
  type: 'sync-step-1';
  stateVector: Uint8Array;
}
export interface SyncStep2Message {
  type: 'sync-step-2';
  update: Uint8Array;
}
export interface UpdateMessage {
  type: 'update';
  update: Uint8Array;
}
export interface AwarenessMessage {
  type: 'awareness';
  update: Uint8Array;
}
export interface QueryAwarenessMessage {
  type: 'query-awareness';
}
/** y-protocols' auth message; the relay sends it to stock clients it refuses. */
export interface AuthDeniedMessage {
  type: 'auth-denied';
  reason: string;
}
/** First message of a capsync-aware peer: which protocol version and features it speaks. */
export interface HelloMessage {
  type: 'hello';
  protocolVersion: number;
  capabilities: string[];
}
/**
 * Durable acknowledgement. `seq` counts the document-carrying messages (sync step 2 and
 * update) this connection has sent, in order: the first `seq` of them are committed to the
 * relay's storage. `stateVector` holds what changed, encoded like a state vector: the
 * relay's entries, right after that commit, for the client ids the acknowledged messages
 * wrote structs under (empty for a barrier). It is not the whole state vector, whose
 * encoding grows with the document's client count.
 */
export interface AckMessage {
  type: 'ack';
  seq: number;
  stateVector: Uint8Array;
}
/** A typed error that does not end the connection (for example a refused read-only update). */
export interface ErrorMessage {
  type: 'error';
  code: ErrorCode;
  message: string;
  /** The refused message's sequence number (see AckMessage), or 0 when not about one. */
  seq: number;
}

/**
 * Heartbeat. A client sends `ping` to prove the link is alive (browsers cannot send
 * WebSocket pings); the relay answers `pong` with the same id at once.
 */
export interface PingMessage {
  type: 'ping';
  id: number;
}
export interface PongMessage {
  type: 'pong';
  id: number;
}

/**
 * A lock operation, sent on a lock connection (`/.capsync/locks`). `id` pairs it with its reply.
 * acquire: `key`, `ttlMs`, `waitMs` (token 0). renew: `key`, `token`, `ttlMs`.
 * release: `key`, `token`. check: `key`, `token` (is it the key's current lease? used by relays
 * that forward to a lock authority relay to fence writes). Requests are independent: replies
 * may come out of order.
 */
export interface LockRequestMessage {
  type: 'lock-request';
  id: number;
  op: LockOp;
  key: string;
  token: number;
  ttlMs: number;
  waitMs: number;
  /**
   * The identity the request is made for, set only by a relay that forwards its clients'
   * requests to the lock authority (`--lock-authority`). The authority honours it only on a
   * connection with a relay credential; from anyone else it is ignored (the connection's own
   * identity is used).
   */
  owner?: string | undefined;
}
/**
 * The answer to a lock request. `code` is '' on success, else an ErrorCode
 * ('lock-timeout', 'lease-lost', 'stale-token', 'unavailable', 'invalid-lock-request', ...).
 * On a successful acquire or renew, `token` is the lease's token and `ttlMs` the time the
 * authority granted, counted from when it received the request.
 */
export interface LockReplyMessage {
  type: 'lock-reply';
  id: number;
  code: ErrorCode | '';
  message: string;
  token: number;
  ttlMs: number;
}
/**
 * A fenced write into the document's CP area: set `key` to the JSON `value` under the lease
 * with `token`. Sent on a document connection; the relay answers with `cp-reply` once the
 * value is applied and durable, or refused.
 */
export interface CpSetMessage {
  type: 'cp-set';
  id: number;
  key: string;
  token: number;
  /** JSON text of the value. */
  json: string;
  /**
   * Write only if the entry's `rev` is still this (0: only if the entry does not exist yet);
   * undefined writes unconditionally. Refused with 'conflict' otherwise.
   */
  ifRev?: number | undefined;
  /** The identity the write is made for: as `LockRequestMessage.owner` (forwarding relays only). */
  owner?: string | undefined;
}
/** Answer to `cp-set`: `code` '' when applied and durable, else why it was refused. */
export interface CpReplyMessage {
  type: 'cp-reply';
  id: number;
  code: ErrorCode | '';
  message: string;
}

/**
 * Quorum acknowledgement, sent to clients that announced the `quorum` capability, for their
 * barrier messages (empty updates): everything the relay had applied when it received
 * message `seq` of this connection (see AckMessage) is durable on a majority of the relays
 * in its mesh, this one included. A relay that cannot reach a majority never sends it.
 */
export interface QuorumAckMessage {
  type: 'quorum-ack';
  seq: number;
}

/**
 * The document's incarnation (DocStore: a counter every delete raises), sent by a relay as the
 * first message of a session to a client that announced INCARNATIONS_CAPABILITY (so never to an
 * older client, which would refuse the unknown kind), unless the client announced this very
 * incarnation (`incarnation:<n>`): its replica stores it already. The client stores it with its replica
 * and announces it (`incarnation:<n>`) on its next connection; a relay whose incarnation is
 * another closes that session with 'document-deleted' (4410) before it takes any update.
 */
export interface IncarnationMessage {
  type: 'incarnation';
  incarnation: number;
}

/** A client takes `incarnation` messages (see IncarnationMessage). */
export const INCARNATIONS_CAPABILITY = 'incarnations';
/** Hello (or session-open) capability of a client whose non-empty replica synced at incarnation N: `incarnation:N`. */
export const INCARNATION_PREFIX = 'incarnation:';

/**
 * The incarnation a hello announces (`incarnation:<n>`), or undefined when it announces none.
 * Throws ProtocolError 'bad-message' when it is malformed (not 1 to 15 digits): taken as none, a
 * replica of a deleted incarnation would be served as new content.
 */
export function incarnationOf(hello: { capabilities: readonly string[] }): number | undefined {
  const cap = hello.capabilities.find((c) => c.startsWith(INCARNATION_PREFIX));
  if (cap === undefined) return undefined;
  const text = cap.slice(INCARNATION_PREFIX.length);
  const n = Number(text);
  if (!/^\d{1,15}$/.test(text) || !Number.isSafeInteger(n)) throw new ProtocolError('bad-message', `malformed incarnation capability "${cap.slice(0, 40)}"`);
  return n;
}

/**
 * The start of a 'document-deleted' refusal's message: the relay's incarnation of the document
 * (at least; see deletedIncarnationOf). First in the message, so the close reason's 123-byte cut
 * keeps it.
 */
export function deletedAt(incarnation: number): string {
  return `[incarnation ${incarnation}] `;
}

/**
 * The incarnation a 'document-deleted' close reason (or message) names (see deletedAt), or
 * undefined when it names none (an older relay). A client erases its replica only when it is
 * greater than the one the replica learned: a relay of an older incarnation (restarted on
 * memory storage, its store restored from a backup) never erases a newer replica.
 */
export function deletedIncarnationOf(reason: string): number | undefined {
  const m = /\[incarnation (\d{1,15})\]/.exec(reason);
  if (!m) return undefined;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * Relay-to-relay only: who owns which Yjs client ids of the link's document (see the relay's
 * ClientOwners). A relay sends it on its peer links before the content written under those
 * ids (with the broadcast that carries it, and before a sync step 2), so a peer that holds a
 * user's structs also knows they are hers. Honoured only on links with a relay credential.
 */
export interface ClientOwnersMessage {
  type: 'client-owners';
  claims: ClientClaims[];
}
/** Client ids of one document owned by one identity. */
export interface ClientClaims {
  owner: string;
  clientIds: number[];
}

/**
 * Multiplexed sockets only (control session): the opener asks for session `sid` on document
 * `name` (`kind` 'locks': the lock protocol, name ''). `subdoc` names a Yjs subdocument of
 * `name` by its guid ('' for the document itself). `capabilities` are added to the socket's
 * hello for this session alone (a document's `writes:<client id>`: each document has its own
 * Yjs client id). The other side answers `session-opened`, or `session-close` with the code a
 * plain connection would have been closed with (4403, 4404, 4413...).
 */
export interface SessionOpenMessage {
  type: 'session-open';
  sid: number;
  kind: 'doc' | 'locks';
  name: string;
  subdoc: string;
  capabilities: string[];
}
/** The session `sid` was accepted, with this permission on its document. */
export interface SessionOpenedMessage {
  type: 'session-opened';
  sid: number;
  permission: 'read' | 'write';
}
/**
 * Session `sid` is over, for the reason a plain connection's close would give (`code`,
 * `reason` as close-codes.ts). Either side sends it, once; it is not answered. Frames of the
 * session still in flight from the other side are dropped.
 */
export interface SessionCloseMessage {
  type: 'session-close';
  sid: number;
  code: number;
  reason: string;
}

/**
 * Flow control of chunks on a multiplexed socket (both hellos list MUX_FLOW_CAPABILITY): the
 * receiver has taken `bytes` more of the chunks the sender sent (mux-frame.ts). The sender keeps
 * at most a window of chunk bytes not yet credited in flight, so a large message cannot fill the
 * operating system's buffers between them, in front of the other sessions' small frames.
 * Control session only.
 */
export interface ChunkCreditMessage {
  type: 'chunk-credit';
  bytes: number;
}

/**
 * A fresh credential for the connection it is sent on, to a relay that announced
 * TOKEN_REFRESH_CAPABILITY: on a multiplexed socket on the control session, for every session
 * of the socket. The relay verifies it as at the upgrade; it must name the same identity (`sub`)
 * or the socket is closed (4401). It then replaces the connection's credential and expiry, and
 * each open document's permission is decided again (see PermissionMessage, PermissionRevoked).
 * Not answered when accepted. At most MAX_REFRESH_TOKEN_LENGTH characters.
 */
export interface TokenRefreshMessage {
  type: 'token-refresh';
  token: string;
}
/**
 * The relay changed this document session's permission while it is open (a refreshed token,
 * or its periodic re-check): 'read', and the client's updates are refused from now on (its
 * edits stay local and pending); 'write' again, and they are taken. Sent only to a client
 * whose hello announced TOKEN_REFRESH_CAPABILITY.
 */
export interface PermissionMessage {
  type: 'permission';
  permission: 'read' | 'write';
}

export type Message =
  | SyncStep1Message
  | SyncStep2Message
  | UpdateMessage
  | AwarenessMessage
  | QueryAwarenessMessage
  | AuthDeniedMessage
  | HelloMessage
  | AckMessage
  | ErrorMessage
  | PingMessage
  | PongMessage
  | LockRequestMessage
  | LockReplyMessage
  | CpSetMessage
  | CpReplyMessage
  | QuorumAckMessage
  | IncarnationMessage
  | ClientOwnersMessage
  | SessionOpenMessage
  | SessionOpenedMessage
  | SessionCloseMessage
  | ChunkCreditMessage
  | TokenRefreshMessage
  | PermissionMessage;

export type MessageOf<T extends Message['type']> = Extract<Message, { type: T }>;
