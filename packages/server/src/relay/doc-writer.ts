import type { UpdateSource } from './origins.js';

/**
 * Who sends a document an update, as `RelayDoc.receive` needs to know it: one typed value per
 * writer, made once per connection (a client's and a peer link's host hold theirs), so nothing
 * is built per update but what the checks themselves keep. The kind decides the checks and the
 * metrics, in `receive` alone:
 * - `client`: a client's WebSocket session. Validated in full: forgery, fenced area, client id
 *   caps, ownership by `subject` (on a relay with auth), the ids it `declared` in its hello.
 *   A write into the fenced area counts in `fencingRejections{fenced-area}`; the time to
 *   validate and apply in `applySeconds`.
 * - `http`: a `POST /v1/docs/:name/update`. Validated as a client's (`source` is the
 *   per-address budget of HttpSources); timed in `applySeconds`.
 * - `peer`: a peer relay's link, either end (relay credential). Trusted: it replicates
 *   everyone's content, fenced values included, so it is checked for integrity only. Timed in
 *   `applySeconds` on the `accepted` end only (a dialled link's traffic is the mesh's, not
 *   served load).
 * - `authority`: the lock authority relay answering a forwarded fenced write. Trusted, untimed.
 */
export type DocWriter = ClientWriter | HttpWriter | PeerWriter | AuthorityWriter;

export interface ClientWriter {
  readonly kind: 'client';
  readonly source: UpdateSource;
  /** The token's `sub` (undefined: a token without one, which may write under no owned client id). */
  readonly subject: string | undefined;
  /** The client ids its hello declared it writes under (WRITES_PREFIX); set when the hello arrives. */
  declared: ReadonlySet<number> | undefined;
}

export interface HttpWriter {
  readonly kind: 'http';
  readonly source: UpdateSource;
  readonly subject: string | undefined;
}

export interface PeerWriter {
  readonly kind: 'peer';
  readonly source: UpdateSource;
  readonly subject: string | undefined;
  /** Which end of the link (see PeerEnd): only the accepted end's applies are timed. */
  readonly end: 'accepted' | 'dialled';
}

export interface AuthorityWriter {
  readonly kind: 'authority';
  readonly source: UpdateSource;
}
