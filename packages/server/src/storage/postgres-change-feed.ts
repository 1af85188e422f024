import { createHash } from 'node:crypto';
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
      // A failure means the connection is lost: its reconnection listens again and says `missed`.
      const listening = this.client ? this.client.query(`LISTEN ${quote(channel)}`).then(() => {}, () => {}) : Promise.resolve();
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
      void this.client?.query(`UNLISTEN ${quote(channel)}`).catch(() => {});
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

  private async connect(): Promise<void> {
    // A heartbeat unanswered this long means the connection is gone (see `beat`).
    const client = new pg.Client({ ...this.config, query_timeout: this.heartbeatMs });
    let dead = false;
    // Errors of a connected client (the server went away) end it: reconnect.
    const lost = () => {
      dead = true;
      this.lost(client);
    };
    client.on('error', lost);
    client.on('end', lost);
    client.on('notification', (msg) => this.deliver(msg.channel, msg.payload));
    try {
      await client.connect();
      const channels = [...this.followed.keys()];
      if (channels.length > 0) await client.query(channels.map((c) => `LISTEN ${quote(c)}`).join('; '));
      if (dead || this.closed) throw new Error('listening connection closed while connecting');
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    this.client = client;
    this.backoff.reset();
    this.emit('connected', true);
    this.beat(client);
  }

  /**
   * A listening connection only receives, so nothing would notice it went silent (a partition or
   * a frozen host keeps TCP up for hours): notes would stop, unseen. A query every `heartbeatMs`
   * that must be answered within `heartbeatMs` proves it alive; one that fails ends it, and the
   * reconnection reads what was missed.
   */
  private beat(client: pg.Client): void {
    this.heartbeat = setTimeout(() => {
      this.heartbeat = null;
      if (this.client !== client) return;
      client.query('SELECT 1').then(
        () => this.beat(client),
        () => this.lost(client),
      );
    }, this.heartbeatMs);
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

/** The channel of `doc`'s notes: the same as CHANGE_CHANNEL_SQL computes in the database. */
export function changeChannel(doc: string): string {
  return `capsync_${createHash('md5').update(doc, 'utf8').digest('hex')}`;
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
      if (typeof raw.w !== 'string') return null;
      const ids = Array.isArray(raw.c) ? raw.c.map(Number) : null;
      if (ids && !ids.every(Number.isSafeInteger)) return null;
      return { kind: 'claims', doc: raw.d, owner: raw.w, clientIds: ids, own };
    }
    if (!Number.isSafeInteger(raw.f) || !Number.isSafeInteger(raw.t)) return null;
    const first = raw.f as number;
    const last = raw.t as number;
    let updates: Uint8Array[] | null = null;
    if (Array.isArray(raw.u)) {
      if (raw.u.length !== last - first + 1 || !raw.u.every((u) => typeof u === 'string')) return null;
      updates = (raw.u as string[]).map((u) => {
        const buf = Buffer.from(u, 'base64');
        return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
      });
    }
    return { kind: 'changes', doc: raw.d, first, last, updates, own, sentAt: typeof raw.s === 'number' ? raw.s : Date.now() };
  } catch {
    return null;
  }
}
