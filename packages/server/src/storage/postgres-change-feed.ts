import { hash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { Backoff } from '@capsync/core';
import type { ChangeFollower, DocNote } from './shared-doc-store.js';

export interface ChangeFeedEvents {
  /** The listening connection is up (true) or lost (false). */
  connected: [up: boolean];
}

/**
 * The relays of a cluster learn each other's commits from PostgreSQL itself: every append
 * NOTIFYs on the document's channel (postgres-append.ts), and this feed LISTENs, on one
 * connection of its own outside the pool, to the channels of the documents its relay has loaded
 * (`follow`). PostgreSQL delivers a transaction's notifications at its commit, in commit order,
 * to every session listening since before that commit, so a follower gets each document's
 * commits in position order.
 *
 * Notes can still be missed: while the connection is down (database restart, partition, the
 * listener's server process killed) nothing is queued for it. Once connected again the feed
 * listens again to every followed channel, and only then tells every follower `missed()`: a
 * follower that reads the log then (`changesAfter`) sees everything committed before, and the
 * notes of anything committed after.
 *
 * `follow` resolves once the channel is listened to (or, while the connection is down, at once:
 * the reconnection's `missed()` covers it), so a document loaded after it resolves misses
 * nothing: what its load does not see commits later, and is notified.
 */
export class PostgresChangeFeed extends EventEmitter<ChangeFeedEvents> {
  private client: pg.Client | null = null;
  /** By channel: the document, its followers, and the LISTEN that made them followers. */
  private readonly followed = new Map<string, { doc: string; followers: Set<ChangeFollower>; listening: Promise<void> }>();
  private readonly backoff = new Backoff({ baseMs: 100, maxMs: 5_000 });
  private retry: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  /** When the listening connection last answered or delivered anything (performance.now()). */
  private lastHeard = 0;
  /** The server process of the latest listening session, ended when a new one connects. */
  private listenerPid: number | null = null;
  private closed = false;

  private constructor(
    private readonly config: pg.ClientConfig,
    /** This relay's store's origin id: notes with it are `own`. */
    private readonly origin: string,
    private readonly heartbeatMs: number,
  ) {
    super();
  }

  /**
   * Connects the listening connection; rejects when the database cannot be reached.
   * `heartbeatMs`: how often the connection proves it is alive (see `beat`).
   */
  static async open(config: pg.ClientConfig, origin: string, heartbeatMs = 5_000): Promise<PostgresChangeFeed> {
    const feed = new PostgresChangeFeed(config, origin, heartbeatMs);
    await feed.connect();
    return feed;
  }

  get connected(): boolean {
    return this.client !== null;
  }

  /**
   * Follows `doc`: `follower` gets its notes until the returned function is called. Resolves
   * once notes of later commits reach it (see the class comment).
   */
  async follow(doc: string, follower: ChangeFollower): Promise<() => void> {
    const channel = changeChannel(doc);
    let entry = this.followed.get(channel);
    if (!entry) {
      const client = this.client;
      // Without a connection: the reconnection listens to every followed channel, then says `missed`.
      const listening = client ? this.listen(client, [channel]) : Promise.resolve();
      entry = { doc, followers: new Set(), listening };
      this.followed.set(channel, entry);
    }
    entry.followers.add(follower);
    await entry.listening;
    const followed = entry;
    return () => {
      if (!followed.followers.delete(follower) || followed.followers.size > 0 || this.followed.get(channel) !== followed) return;
      this.followed.delete(channel);
      // Queued on the connection after any LISTEN, and before a later follow's LISTEN.
      const client = this.client;
      if (client) void this.command(client, `UNLISTEN ${quote(channel)}`);
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    if (this.heartbeat) clearTimeout(this.heartbeat);
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => {});
  }

  /**
   * LISTENs on `channels`, in statements of LISTEN_CHUNK (PostgreSQL checks each LISTEN against
   * the session's list: one statement for tens of thousands costs seconds and answers nothing
   * meanwhile). A failure loses the connection: its reconnection listens again and says `missed`.
   */
  private async listen(client: pg.Client, channels: string[]): Promise<void> {
    for (let i = 0; i < channels.length && this.client === client; i += LISTEN_CHUNK) {
      await this.command(client, channels.slice(i, i + LISTEN_CHUNK).map((c) => `LISTEN ${quote(c)}`).join('; '));
    }
  }

  /** A statement on the listening connection; resolves either way (a failure loses the connection). */
  private async command(client: pg.Client, text: string): Promise<boolean> {
    try {
      await client.query(text);
      this.lastHeard = performance.now();
      return true;
    } catch {
      this.lost(client);
      return false;
    }
  }

  private async connect(): Promise<void> {
    // No query_timeout: LISTENs queue behind each other; the heartbeat (`beat`) tells a dead connection.
    const client = new pg.Client(this.config);
    let dead = false;
    // Errors of a connected client (the server went away) end it: reconnect.
    const lost = () => {
      dead = true;
      this.lost(client);
    };
    client.on('error', lost);
    client.on('end', lost);
    client.on('notification', (msg) => {
      this.lastHeard = performance.now();
      this.deliver(msg.channel, msg.payload);
    });
    try {
      await client.connect();
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      // The previous listening session may live on in the server (a partition leaves it waiting
      // for TCP to time out, hours): PostgreSQL's notification queue cannot shrink past what a
      // listening session has not read, and once full every append fails. End it.
      if (this.listenerPid !== null) await client.query('SELECT pg_terminate_backend($1)', [this.listenerPid]).catch(() => {});
      this.listenerPid = rows[0]!.pid;
      if (dead || this.closed) throw new Error('listening connection closed while connecting');
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    // From here a `follow` LISTENs on this connection itself, after the channels taken below.
    this.client = client;
    this.lastHeard = performance.now();
    await this.listen(client, [...this.followed.keys()]);
    if (this.client !== client) throw new Error('listening connection lost while listening');
    this.backoff.reset();
    this.emit('connected', true);
    this.beat(client);
  }

  /**
   * A listening connection only receives, so nothing would notice it went silent (a partition or
   * a frozen host keeps TCP up for hours): notes would stop, unseen. Every `heartbeatMs` it is
   * asked a `SELECT 1` (unless one is unanswered); when nothing at all came back on it (answers,
   * notes) for twice that, it is dropped, and the reconnection reads what was missed.
   */
  private beat(client: pg.Client): void {
    let asking = false;
    const tick = (): void => {
      this.heartbeat = null;
      if (this.client !== client) return;
      if (asking && performance.now() - this.lastHeard > 2 * this.heartbeatMs) {
        this.lost(client);
        return;
      }
      if (!asking) {
        asking = true;
        void this.command(client, 'SELECT 1').then(() => (asking = false));
      }
      this.heartbeat = setTimeout(tick, this.heartbeatMs);
      this.heartbeat.unref();
    };
    this.heartbeat = setTimeout(tick, this.heartbeatMs);
    this.heartbeat.unref();
  }

  private lost(client: pg.Client): void {
    if (this.client !== client) return;
    this.client = null;
    // end() waits for the server to close, which a silent connection never does: drop the socket.
    (client as unknown as { connection?: { stream?: { destroy?(): void } } }).connection?.stream?.destroy?.();
    void client.end().catch(() => {});
    this.emit('connected', false);
    this.reconnect();
  }

  private reconnect(): void {
    if (this.closed || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      this.connect().then(
        () => {
          // Listening again: whatever was missed is in the log now, what commits later is notified.
          for (const { followers } of this.followed.values()) for (const f of followers) f.missed();
        },
        () => this.reconnect(),
      );
    }, this.backoff.next());
    this.retry.unref();
  }

  private deliver(channel: string, payload: string | undefined): void {
    const entry = this.followed.get(channel);
    if (!entry) return;
    const note = parseNote(payload, this.origin);
    // Unreadable (a newer capsync?) or another document's (an md5 collision): read the log instead.
    if (!note || note.doc !== entry.doc) {
      for (const f of entry.followers) f.missed();
      return;
    }
    for (const f of entry.followers) f.note(note);
  }
}

/** LISTEN statements sent in one query (see `listen`). */
const LISTEN_CHUNK = 500;

/** The channel of `doc`'s notes: the same as CHANGE_CHANNEL_SQL computes in the database. */
export function changeChannel(doc: string): string {
  return `capsync_${hash('md5', doc, 'hex')}`;
}

function quote(channel: string): string {
  return `"${channel}"`;
}

function parseNote(payload: string | undefined, origin: string): DocNote | null {
  try {
    const raw = JSON.parse(payload ?? '') as { o?: unknown; d?: unknown; k?: unknown; f?: unknown; t?: unknown; s?: unknown; u?: unknown; w?: unknown; c?: unknown };
    if (typeof raw.d !== 'string') return null;
    const own = raw.o === origin;
    if (raw.k === 'claims') {
      // Too large to travel (null): the follower reads the owners.
      const ids = typeof raw.w === 'string' && Array.isArray(raw.c) ? raw.c.map(Number) : null;
      if (ids && !ids.every(Number.isSafeInteger)) return null;
      return ids ? { kind: 'claims', doc: raw.d, owner: raw.w as string, clientIds: ids, own } : { kind: 'claims', doc: raw.d, owner: null, clientIds: null, own };
    }
    if (raw.k === 'deleted') {
      const incarnation = (raw as { i?: unknown }).i;
      return Number.isSafeInteger(incarnation) ? { kind: 'deleted', doc: raw.d, incarnation: incarnation as number, own } : null;
    }
    if (raw.k === 'preview') {
      if (!Array.isArray(raw.u) || !raw.u.every((u) => typeof u === 'string')) return null;
      return { kind: 'preview', doc: raw.d, updates: (raw.u as string[]).map(fromBase64), own, sentAt: typeof raw.s === 'number' ? raw.s : Date.now() };
    }
    if (!Number.isSafeInteger(raw.f) || !Number.isSafeInteger(raw.t)) return null;
    const first = raw.f as number;
    const last = raw.t as number;
    let updates: Uint8Array[] | null = null;
    if (Array.isArray(raw.u)) {
      if (raw.u.length !== last - first + 1 || !raw.u.every((u) => typeof u === 'string')) return null;
      updates = (raw.u as string[]).map(fromBase64);
    }
    return { kind: 'changes', doc: raw.d, first, last, updates, own, sentAt: typeof raw.s === 'number' ? raw.s : Date.now() };
  } catch {
    return null;
  }
}

function fromBase64(u: string): Uint8Array {
  const buf = Buffer.from(u, 'base64');
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}
