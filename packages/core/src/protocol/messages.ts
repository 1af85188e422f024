/**
 * The wire codec: one encoder and one validating decoder for the messages of message-types.ts
 * (frame layout documented there).
 */
import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import { ProtocolError, type ErrorCode } from '../errors.js';
import { MessageType, type ClientClaims, type LockOp, type Message, type SessionOpenMessage, type SessionOpenedMessage } from './message-types.js';
import { varUintSize, writeVarUintAt } from './varint.js';

export * from './message-types.js';

const SyncKind = { Step1: 0, Step2: 1, Update: 2 } as const;
/**
 * Kinds of capsync messages (type 100). `Chunk` (14) is not a Message: it is a piece of one,
 * on a multiplexed socket only (protocol/mux-frame.ts), put together below the codec. Nor is
 * `Batch` (15): several frames of a multiplexed socket in one WebSocket message, taken apart
 * below the codec too.
 */
export const CapsyncKind = {
  Hello: 0, Ack: 1, Error: 2, Ping: 3, Pong: 4, LockRequest: 5, LockReply: 6, CpSet: 7, CpReply: 8, QuorumAck: 9, ClientOwners: 10,
  SessionOpen: 11, SessionOpened: 12, SessionClose: 13, Chunk: 14, Batch: 15, ChunkCredit: 16, TokenRefresh: 17, Permission: 18, Incarnation: 19,
} as const;
const SessionKinds: readonly SessionOpenMessage['kind'][] = ['doc', 'locks'];
const Permissions: readonly SessionOpenedMessage['permission'][] = ['read', 'write'];
const LockOps: readonly LockOp[] = ['acquire', 'renew', 'release', 'check'];
const AuthKind = { PermissionDenied: 0 } as const;

/**
 * True when `frame` is a capsync `hello` or `pong`, read from its first two bytes without
 * decoding it (both kinds, and the capsync type 100, are one-byte varints). For a link that
 * only needs to spot these among every frame it passes on (the Dialer); decode to trust it.
 */
export function isCapsyncFrame(frame: Uint8Array, type: 'hello' | 'pong'): boolean {
  return frame[0] === MessageType.Capsync && frame[1] === (type === 'hello' ? CapsyncKind.Hello : CapsyncKind.Pong);
}

/**
 * The one encoder every message is written with, emptied before each use. Encoding is
 * synchronous and never nested, so one is enough; lib0 gives each new encoder a 100-byte
 * buffer, which is over V8's limit for typed arrays kept on the JS heap (64 bytes): a backing
 * store allocated outside it and swept by the collector, thousands of them when 1,000
 * documents open at once. Past SHARED_ENCODER_BYTES (one large message grew it) it starts over.
 */
const shared = encoding.createEncoder();
const SHARED_ENCODER_BYTES = 64 * 1024;

function sharedEncoder(): encoding.Encoder {
  shared.cpos = 0;
  shared.bufs.length = 0;
  if (shared.cbuf.byteLength > SHARED_ENCODER_BYTES) shared.cbuf = new Uint8Array(100);
  return shared;
}

/** Encodes one message into one binary frame. */
export function encodeMessage(msg: Message): Uint8Array {
  // The messages that carry a document's bytes: one allocation and one copy. lib0's encoder
  // grows by doubling and then joins its buffers, which for a 10 MB first sync was two more
  // 10 MB allocations and copies in the relay's answer (tens of milliseconds, one task).
  if (msg.type === 'sync-step-2') return payloadMessage(MessageType.Sync, SyncKind.Step2, msg.update);
  if (msg.type === 'update') return payloadMessage(MessageType.Sync, SyncKind.Update, msg.update);
  if (msg.type === 'awareness') return payloadMessage(MessageType.Awareness, -1, msg.update);
  const e = sharedEncoder();
  switch (msg.type) {
    case 'sync-step-1':
      encoding.writeVarUint(e, MessageType.Sync);
      encoding.writeVarUint(e, SyncKind.Step1);
      encoding.writeVarUint8Array(e, msg.stateVector);
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
      writeCapabilities(e, msg.capabilities);
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
    case 'incarnation':
      encoding.writeVarUint(e, MessageType.Capsync);
      encoding.writeVarUint(e, CapsyncKind.Incarnation);
      encoding.writeVarUint(e, msg.incarnation);
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
    case 'session-open':
      encoding.writeVarUint(e, MessageType.Capsync);
      encoding.writeVarUint(e, CapsyncKind.SessionOpen);
      encoding.writeVarUint(e, msg.sid);
      encoding.writeVarUint(e, SessionKinds.indexOf(msg.kind));
      encoding.writeVarString(e, msg.name);
      encoding.writeVarString(e, msg.subdoc);
      writeCapabilities(e, msg.capabilities);
      break;
    case 'session-opened':
      encoding.writeVarUint(e, MessageType.Capsync);
      encoding.writeVarUint(e, CapsyncKind.SessionOpened);
      encoding.writeVarUint(e, msg.sid);
      encoding.writeVarUint(e, Permissions.indexOf(msg.permission));
      break;
    case 'session-close':
      encoding.writeVarUint(e, MessageType.Capsync);
      encoding.writeVarUint(e, CapsyncKind.SessionClose);
      encoding.writeVarUint(e, msg.sid);
      encoding.writeVarUint(e, msg.code);
      encoding.writeVarString(e, msg.reason);
      break;
    case 'chunk-credit':
      encoding.writeVarUint(e, MessageType.Capsync);
      encoding.writeVarUint(e, CapsyncKind.ChunkCredit);
      encoding.writeVarUint(e, msg.bytes);
      break;
    case 'token-refresh':
      encoding.writeVarUint(e, MessageType.Capsync);
      encoding.writeVarUint(e, CapsyncKind.TokenRefresh);
      encoding.writeVarString(e, msg.token);
      break;
    case 'permission':
      encoding.writeVarUint(e, MessageType.Capsync);
      encoding.writeVarUint(e, CapsyncKind.Permission);
      encoding.writeVarUint(e, Permissions.indexOf(msg.permission));
      break;
  }
  return encoding.toUint8Array(e);
}

/** Upper bound on the capabilities of a hello or a session-open, so a hostile one cannot allocate much. */
const MAX_CAPABILITIES = 64;
/**
 * Upper bound on the length of one capability (UTF-16 code units). The longest real one is an
 * owner key (`owner:` + at most 128 characters). Why a bound: a hello or session-open is kept
 * for its connection's or session's life, and a multiplexed socket has up to
 * `--max-sessions-per-socket` sessions, each with its open's capabilities: without it each could
 * hold a frame's worth (`--max-message-bytes`).
 */
export const MAX_CAPABILITY_LENGTH = 256;
/** Longest token a `token-refresh` carries (characters): what HTTP servers take in a header, about. */
export const MAX_REFRESH_TOKEN_LENGTH = 16 * 1024;

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
        return { type: 'hello', protocolVersion, capabilities: readCapabilities(d, 'hello') };
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
      if (kind === CapsyncKind.Incarnation) return { type: 'incarnation', incarnation: decoding.readVarUint(d) };
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
      if (kind === CapsyncKind.SessionOpen) {
        const sid = decoding.readVarUint(d);
        const kindIndex = decoding.readVarUint(d);
        const sessionKind = SessionKinds[kindIndex];
        if (sessionKind === undefined) throw new ProtocolError('bad-message', `unknown session kind ${kindIndex}`);
        const name = decoding.readVarString(d);
        const subdoc = decoding.readVarString(d);
        return { type: 'session-open', sid, kind: sessionKind, name, subdoc, capabilities: readCapabilities(d, 'session-open') };
      }
      if (kind === CapsyncKind.SessionOpened) {
        const sid = decoding.readVarUint(d);
        const permissionIndex = decoding.readVarUint(d);
        const permission = Permissions[permissionIndex];
        if (permission === undefined) throw new ProtocolError('bad-message', `unknown permission ${permissionIndex}`);
        return { type: 'session-opened', sid, permission };
      }
      if (kind === CapsyncKind.SessionClose) {
        const sid = decoding.readVarUint(d);
        const code = decoding.readVarUint(d);
        // A close code as WebSocket close frames carry them (1000-4999), so it can be passed on as one.
        if (code < 1000 || code > 4999) throw new ProtocolError('bad-message', `session close code ${code} is not a close code`);
        return { type: 'session-close', sid, code, reason: decoding.readVarString(d) };
      }
      if (kind === CapsyncKind.ChunkCredit) return { type: 'chunk-credit', bytes: decoding.readVarUint(d) };
      if (kind === CapsyncKind.TokenRefresh) {
        const token = decoding.readVarString(d);
        if (token.length > MAX_REFRESH_TOKEN_LENGTH) throw new ProtocolError('bad-message', `token-refresh carries a token of ${token.length} characters (max ${MAX_REFRESH_TOKEN_LENGTH})`);
        return { type: 'token-refresh', token };
      }
      if (kind === CapsyncKind.Permission) {
        const permissionIndex = decoding.readVarUint(d);
        const permission = Permissions[permissionIndex];
        if (permission === undefined) throw new ProtocolError('bad-message', `unknown permission ${permissionIndex}`);
        return { type: 'permission', permission };
      }
      throw new ProtocolError('unknown-message-type', `unknown capsync message kind ${kind}`);
    }
    default:
      throw new ProtocolError('unknown-message-type', `unknown message type ${type}`);
  }
}

function writeCapabilities(e: encoding.Encoder, capabilities: readonly string[]): void {
  encoding.writeVarUint(e, capabilities.length);
  for (const c of capabilities) encoding.writeVarString(e, c);
}

function readCapabilities(d: decoding.Decoder, what: string): string[] {
  const n = decoding.readVarUint(d);
  if (n > MAX_CAPABILITIES) throw new ProtocolError('bad-message', `${what} lists ${n} capabilities (max ${MAX_CAPABILITIES})`);
  const capabilities: string[] = [];
  for (let i = 0; i < n; i++) {
    const capability = decoding.readVarString(d);
    if (capability.length > MAX_CAPABILITY_LENGTH) throw new ProtocolError('bad-message', `${what} lists a capability of ${capability.length} characters (max ${MAX_CAPABILITY_LENGTH})`);
    capabilities.push(capability);
  }
  return capabilities;
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

/** `[type][kind, unless -1][varUint length][payload]`: what lib0's writeVarUint/writeVarUint8Array would write (type and kind are one-byte varints). */
function payloadMessage(type: number, kind: number, payload: Uint8Array): Uint8Array {
  const head = kind < 0 ? 1 : 2;
  const out = new Uint8Array(head + varUintSize(payload.byteLength) + payload.byteLength);
  out[0] = type;
  if (kind >= 0) out[1] = kind;
  out.set(payload, writeVarUintAt(out, head, payload.byteLength));
  return out;
}
