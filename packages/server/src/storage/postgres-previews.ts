import type pg from 'pg';
import { CHANGE_CHANNEL_SQL, INLINE_NOTE_BYTES, INLINE_NOTE_UPDATES } from './postgres-append.js';

/** What became of previews (counted by the relay's metrics). */
export type PreviewOutcome = 'sent' | 'dropped' | 'failed';

/**
 * Bytes of updates waiting to be previewed at most; past it previews are dropped until the
 * statement in flight returns, so a slow or unreachable database never makes them pile up.
 */
export const MAX_PREVIEW_BYTES = 1024 * 1024;

const PREVIEW_SQL = `SELECT set_config('synchronous_commit', 'off', true), pg_notify(${CHANGE_CHANNEL_SQL('t.doc')}, t.payload)
  FROM unnest($1::text[], $2::text[]) AS t (doc, payload)`;

/**
 * Sends previews (SharedDocStore.preview) on PostgreSQL: NOTIFY on the document's channel, the
 * same one its commits are noted on, with `k` 'preview', the `o`rigin, the `d`ocument, `s`: when
 * sent (this relay's clock, ms), `u`: the updates in base64. The relays following the document
 * send them on to their connections without waiting for the commit (without applying them:
 * RelayDoc.forwardPreview), which is what makes delivery between relays as fast as within one
 * (a relay's own clients get a change before it commits too).
 *
 * Best effort, by design: the previews of one event-loop turn go in one statement (one NOTIFY
 * per document and INLINE_NOTE_BYTES / INLINE_NOTE_UPDATES of its updates, as commits' notes),
 * at most one statement is in flight, and a preview that does not fit (larger than an inline
 * note, or more than MAX_PREVIEW_BYTES waiting) or whose statement fails is dropped: the
 * commit's note (or a read of the log) brings the change anyway, only later.
 *
 * The statement is a transaction of its own with `synchronous_commit` off: a NOTIFY takes a
 * transaction id, so its commit would otherwise wait for a WAL flush, and there is nothing
 * here to make durable.
 */
export class PostgresPreviews {
  /** Notes to send, in order; `open` has the last one of each document, while it has room. */
  private queued: { doc: string; updates: string[]; bytes: number }[] = [];
  private open = new Map<string, { doc: string; updates: string[]; bytes: number }>();
  private queuedBytes = 0;
  private scheduled = false;
  private sending = false;
  private closed = false;

  constructor(
    private readonly pool: pg.Pool,
    private readonly origin: string,
    private readonly counted: (outcome: PreviewOutcome, updates: number) => void = () => {},
  ) {}

  add(name: string, update: Uint8Array): void {
    if (this.closed) return;
    const bytes = update.byteLength;
    if (bytes > INLINE_NOTE_BYTES || this.queuedBytes + bytes > MAX_PREVIEW_BYTES) return this.counted('dropped', 1);
    let note = this.open.get(name);
    if (!note || note.bytes + bytes > INLINE_NOTE_BYTES || note.updates.length >= INLINE_NOTE_UPDATES) {
      note = { doc: name, updates: [], bytes: 0 };
      this.open.set(name, note);
      this.queued.push(note);
    }
    note.updates.push(Buffer.from(update.buffer, update.byteOffset, update.byteLength).toString('base64'));
    note.bytes += bytes;
    this.queuedBytes += bytes;
    this.schedule();
  }

  /** Sends nothing more (the store is closing; a statement in flight ends on its own). */
  close(): void {
    this.closed = true;
    this.queued = [];
    this.open.clear();
  }

  /** Sends at the end of the turn, so the turn's other previews join the statement. */
  private schedule(): void {
    if (this.scheduled || this.sending) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.send();
    });
  }

  private async send(): Promise<void> {
    const batch = this.queued;
    this.queued = [];
    this.open.clear();
    this.queuedBytes = 0;
    if (batch.length === 0) return;
    this.sending = true;
    const names: string[] = [];
    const payloads: string[] = [];
    let updates = 0;
    const sentAt = Date.now();
    for (const note of batch) {
      const payload = JSON.stringify({ o: this.origin, d: note.doc, k: 'preview', s: sentAt, u: note.updates });
      // PostgreSQL refuses a payload of 8,000 bytes or more, and the whole statement with it
      // (a long name with many escaped characters could get there).
      if (Buffer.byteLength(payload) >= 7_900) {
        this.counted('dropped', note.updates.length);
        continue;
      }
      names.push(note.doc);
      payloads.push(payload);
      updates += note.updates.length;
    }
    try {
      if (names.length > 0) {
        await this.pool.query({ name: 'capsync_preview', text: PREVIEW_SQL, values: [names, payloads] });
        this.counted('sent', updates);
      }
    } catch {
      // The database is unreachable or failing: the commits (and their notes) are what count.
      this.counted('failed', updates);
    } finally {
      this.sending = false;
      if (this.queued.length > 0) this.schedule();
    }
  }
}
