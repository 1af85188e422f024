/**
 * The wire protocol: the standard y-websocket messages plus capsync's extension messages,
 * as a tagged union with one encoder and one validating decoder.
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
 *
 * Extension messages are only sent to a peer that first sent `hello`, so stock y-websocket
 * clients never see them. A field in parentheses is optional and last: it is written only
 * when set, so encodings without it (older peers) still decode.
 */
import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import { ProtocolError, type ErrorCode } from '../errors.js';

/** Bumped on any incompatible change to the capsync extension messages. */
export const PROTOCOL_VERSION = 1;

/** Capabilities a relay of this version offers in its hello. */
export const RELAY_CAPABILITIES = ['ack', 'error', 'ping', 'cp', 'quorum'] as const;

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

export const MessageType = {
  Sync: 0,
  Awareness: 1,
  Auth: 2,
  QueryAwareness: 3,
  Capsync: 100,
} as const;

const SyncKind = { Step1: 0, Step2: 1, Update: 2 } as const;
const CapsyncKind = { Hello: 0, Ack: 1, Error: 2, Ping: 3, Pong: 4, LockRequest: 5, LockReply: 6, CpSet: 7, CpReply: 8, QuorumAck: 9, ClientOwners: 10 } as const;
const LockOps = ['acquire', 'renew', 'release', 'check'] as const;
export type LockOp = (typeof LockOps)[number];
const AuthKind = { PermissionDenied: 0 } as const;

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
 * A lock operation, sent on a lock connection (`/.locks`). `id` pairs it with its reply.
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
  | ClientOwnersMessage;

export type MessageOf<T extends Message['type']> = Extract<Message, { type: T }>;

/** Encodes one message into one binary frame. */
export function encodeMessage(msg: Message): Uint8Array {
  const e = encoding.createEncoder();
  switch (msg.type) {
    case 'sync-step-1':
      encoding.writeVarUint(e, MessageType.Sync);
      encoding.writeVarUint(e, SyncKind.Step1);
      encoding.writeVarUint8Array(e, msg.stateVector);
      break;
    case 'sync-step-2':
      encoding.writeVarUint(e, MessageType.Sync);
      encoding.writeVarUint(e, SyncKind.Step2);
      encoding.writeVarUint8Array(e, msg.update);
      break;
    case 'update':
      encoding.writeVarUint(e, MessageType.Sync);
      encoding.writeVarUint(e, SyncKind.Update);
      encoding.writeVarUint8Array(e, msg.update);
      break;
    case 'awareness':
      encoding.writeVarUint(e, MessageType.Awareness);
      encoding.writeVarUint8Array(e, msg.update);
      break;
    case 'query-awareness':
      encoding.writeVarUint(e, MessageType.QueryAwareness);
      break;
    case 'auth-denied':
      encoding.writeVarUint(e, MessageType.Auth);
      encoding.writeVarUint(e, AuthKind.PermissionDenied);
      encoding.writeVarString(e, msg.reason);
      break;
    case 'hello':
      encoding.writeVarUint(e, MessageType.Capsync);
      encoding.writeVarUint(e, CapsyncKind.Hello);
      encoding.writeVarUint(e, msg.protocolVersion);
      encoding.writeVarUint(e, msg.capabilities.length);
      for (const c of msg.capabilities) encoding.writeVarString(e, c);
      break;
    case 'ack':
      encoding.writeVarUint(e, MessageType.Capsync);
      encoding.writeVarUint(e, CapsyncKind.Ack);
      encoding.writeVarUint(e, msg.seq);
      encoding.writeVarUint8Array(e, msg.stateVector);
      break;
    case 'error':
      encoding.writeVarUint(e, MessageType.Capsync);
      encoding.writeVarUint(e, CapsyncKind.Error);
      encoding.writeVarString(e, msg.code);
      encoding.writeVarString(e, msg.message);
      encoding.writeVarUint(e, msg.seq);
      break;
    case 'ping':
    case 'pong':
      encoding.writeVarUint(e, MessageType.Capsync);
      encoding.writeVarUint(e, msg.type === 'ping' ? CapsyncKind.Ping : CapsyncKind.Pong);
      encoding.writeVarUint(e, msg.id);
      break;
    case 'lock-request':
      encoding.writeVarUint(e, MessageType.Capsync);
      encoding.writeVarUint(e, CapsyncKind.LockRequest);
      encoding.writeVarUint(e, msg.id);
      encoding.writeVarUint(e, LockOps.indexOf(msg.op));
      encoding.writeVarString(e, msg.key);
      encoding.writeVarUint(e, msg.token);
      encoding.writeVarUint(e, msg.ttlMs);
      encoding.writeVarUint(e, msg.waitMs);
      if (msg.owner !== undefined) encoding.writeVarString(e, msg.owner);
      break;
    case 'lock-reply':
      encoding.writeVarUint(e, MessageType.Capsync);
      encoding.writeVarUint(e, CapsyncKind.LockReply);
      encoding.writeVarUint(e, msg.id);
      encoding.writeVarString(e, msg.code);
      encoding.writeVarString(e, msg.message);
      encoding.writeVarUint(e, msg.token);
      encoding.writeVarUint(e, msg.ttlMs);
      break;
    case 'cp-set':
      encoding.writeVarUint(e, MessageType.Capsync);
      encoding.writeVarUint(e, CapsyncKind.CpSet);
      encoding.writeVarUint(e, msg.id);
      encoding.writeVarString(e, msg.key);
      encoding.writeVarUint(e, msg.token);
      encoding.writeVarString(e, msg.json);
      encoding.writeVarUint(e, msg.ifRev === undefined ? 0 : msg.ifRev + 1);
      if (msg.owner !== undefined) encoding.writeVarString(e, msg.owner);
      break;
    case 'cp-reply':
      encoding.writeVarUint(e, MessageType.Capsync);
      encoding.writeVarUint(e, CapsyncKind.CpReply);
      encoding.writeVarUint(e, msg.id);
      encoding.writeVarString(e, msg.code);
      encoding.writeVarString(e, msg.message);
      break;
    case 'quorum-ack':
      encoding.writeVarUint(e, MessageType.Capsync);
      encoding.writeVarUint(e, CapsyncKind.QuorumAck);
      encoding.writeVarUint(e, msg.seq);
      break;
    case 'client-owners':
      encoding.writeVarUint(e, MessageType.Capsync);
      encoding.writeVarUint(e, CapsyncKind.ClientOwners);
      encoding.writeVarUint(e, msg.claims.length);
      for (const c of msg.claims) {
        encoding.writeVarString(e, c.owner);
        encoding.writeVarUint(e, c.clientIds.length);
        for (const id of c.clientIds) encoding.writeVarUint(e, id);
      }
      break;
  }
  return encoding.toUint8Array(e);
}

/** Upper bound on hello capabilities, so a hostile hello cannot allocate much. */
const MAX_CAPABILITIES = 64;

/**
 * Decodes and validates one frame. Throws `ProtocolError` ('bad-message' or
 * 'unknown-message-type') for anything malformed: truncated varints, unknown types,
 * lengths past the end, trailing bytes. It does not validate Yjs update contents;
 * see `validateUpdate`.
 */
export function decodeMessage(frame: Uint8Array): Message {
  const d = decoding.createDecoder(frame);
  let msg: Message;
  try {
    msg = readMessage(d);
  } catch (err) {
    if (err instanceof ProtocolError) throw err;
    throw new ProtocolError('bad-message', `malformed frame: ${(err as Error).message}`, { cause: err });
  }
  if (decoding.hasContent(d)) {
    throw new ProtocolError('bad-message', `${d.arr.length - d.pos} trailing bytes after ${msg.type} message`);
  }
  return msg;
}

function readMessage(d: decoding.Decoder): Message {
  if (!decoding.hasContent(d)) throw new ProtocolError('bad-message', 'empty frame');
  const type = decoding.readVarUint(d);
  switch (type) {
    case MessageType.Sync: {
      const kind = decoding.readVarUint(d);
      const payload = readBytes(d);
      if (kind === SyncKind.Step1) return { type: 'sync-step-1', stateVector: payload };
      if (kind === SyncKind.Step2) return { type: 'sync-step-2', update: payload };
      if (kind === SyncKind.Update) return { type: 'update', update: payload };
      throw new ProtocolError('unknown-message-type', `unknown sync message kind ${kind}`);
    }
    case MessageType.Awareness:
      return { type: 'awareness', update: readBytes(d) };
    case MessageType.QueryAwareness:
      return { type: 'query-awareness' };
    case MessageType.Auth: {
      const kind = decoding.readVarUint(d);
      if (kind !== AuthKind.PermissionDenied) throw new ProtocolError('unknown-message-type', `unknown auth message kind ${kind}`);
      return { type: 'auth-denied', reason: decoding.readVarString(d) };
    }
    case MessageType.Capsync: {
      const kind = decoding.readVarUint(d);
      if (kind === CapsyncKind.Hello) {
        const protocolVersion = decoding.readVarUint(d);
        const n = decoding.readVarUint(d);
        if (n > MAX_CAPABILITIES) throw new ProtocolError('bad-message', `hello lists ${n} capabilities (max ${MAX_CAPABILITIES})`);
        const capabilities: string[] = [];
        for (let i = 0; i < n; i++) capabilities.push(decoding.readVarString(d));
        return { type: 'hello', protocolVersion, capabilities };
      }
      if (kind === CapsyncKind.Ack) {
        const seq = decoding.readVarUint(d);
        return { type: 'ack', seq, stateVector: readBytes(d) };
      }
      if (kind === CapsyncKind.Error) {
        const code = decoding.readVarString(d) as ErrorCode;
        const message = decoding.readVarString(d);
        const seq = decoding.readVarUint(d);
        return { type: 'error', code, message, seq };
      }
      if (kind === CapsyncKind.Ping) return { type: 'ping', id: decoding.readVarUint(d) };
      if (kind === CapsyncKind.Pong) return { type: 'pong', id: decoding.readVarUint(d) };
      if (kind === CapsyncKind.LockRequest) {
        const id = decoding.readVarUint(d);
        const opIndex = decoding.readVarUint(d);
        const op = LockOps[opIndex];
        if (op === undefined) throw new ProtocolError('bad-message', `unknown lock operation ${opIndex}`);
        const key = decoding.readVarString(d);
        const token = decoding.readVarUint(d);
        const ttlMs = decoding.readVarUint(d);
        const waitMs = decoding.readVarUint(d);
        if (!decoding.hasContent(d)) return { type: 'lock-request', id, op, key, token, ttlMs, waitMs };
        return { type: 'lock-request', id, op, key, token, ttlMs, waitMs, owner: decoding.readVarString(d) };
      }
      if (kind === CapsyncKind.LockReply) {
        const id = decoding.readVarUint(d);
        const code = decoding.readVarString(d) as ErrorCode | '';
        const message = decoding.readVarString(d);
        const token = decoding.readVarUint(d);
        const ttlMs = decoding.readVarUint(d);
        return { type: 'lock-reply', id, code, message, token, ttlMs };
      }
      if (kind === CapsyncKind.CpSet) {
        const id = decoding.readVarUint(d);
        const key = decoding.readVarString(d);
        const token = decoding.readVarUint(d);
        const json = decoding.readVarString(d);
        const ifRevPlusOne = decoding.readVarUint(d);
        const owner = decoding.hasContent(d) ? { owner: decoding.readVarString(d) } : {};
        return { type: 'cp-set', id, key, token, json, ...(ifRevPlusOne > 0 ? { ifRev: ifRevPlusOne - 1 } : {}), ...owner };
      }
      if (kind === CapsyncKind.CpReply) {
        const id = decoding.readVarUint(d);
        const code = decoding.readVarString(d) as ErrorCode | '';
        return { type: 'cp-reply', id, code, message: decoding.readVarString(d) };
      }
      if (kind === CapsyncKind.QuorumAck) return { type: 'quorum-ack', seq: decoding.readVarUint(d) };
      if (kind === CapsyncKind.ClientOwners) {
        // Every owner and id takes at least one byte: a count past the frame's end is a lie.
        const claims: ClientClaims[] = [];
        const n = readCount(d);
        for (let i = 0; i < n; i++) {
          const owner = decoding.readVarString(d);
          const m = readCount(d);
          const clientIds: number[] = new Array(m);
          for (let j = 0; j < m; j++) clientIds[j] = decoding.readVarUint(d);
          claims.push({ owner, clientIds });
        }
        return { type: 'client-owners', claims };
      }
      throw new ProtocolError('unknown-message-type', `unknown capsync message kind ${kind}`);
    }
    default:
      throw new ProtocolError('unknown-message-type', `unknown message type ${type}`);
  }
}

/** A count of items of at least one byte each, checked against what is left of the frame. */
function readCount(d: decoding.Decoder): number {
  const n = decoding.readVarUint(d);
  if (n > d.arr.length - d.pos) throw new ProtocolError('bad-message', `count ${n} runs past the end of the frame`);
  return n;
}

/** readVarUint8Array with an explicit bounds check (lib0 would throw a RangeError, or worse). */
function readBytes(d: decoding.Decoder): Uint8Array {
  const len = decoding.readVarUint(d);
  if (len > d.arr.length - d.pos) {
    throw new ProtocolError('bad-message', `length ${len} runs past the end of the frame`);
  }
  return decoding.readUint8Array(d, len);
}
