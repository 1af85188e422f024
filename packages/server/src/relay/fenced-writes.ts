import type * as Y from 'yjs';
import { readFenced, writeFenced, type ErrorCode } from '@capsync/core';

/** How a fenced write ended: code '' when applied and committed, else why it was refused. */
export interface FencedOutcome {
  code: ErrorCode | '';
  message?: string;
}

/** What a document's fenced writes need of it (RelayDoc gives them this). */
export interface FencedWriteHost {
  /** The document to write into, or null while it takes no input (recovering, unloaded). */
  current(): Y.Doc | null;
  /**
   * False while storage cannot be reached (appends wait for it, see StorageRetries): a fenced
   * write is then refused `unavailable` at once. Made, it would hold the document's input and
   * broadcasts until storage came back (it must not be seen before it is committed).
   */
  storageReachable(): boolean;
  /**
   * Makes `change` on the document, as the relay, and resolves true once it is committed;
   * nobody sees it before (input and broadcasts are held). False: the commit failed, and the
   * document reloads from storage, which drops the change.
   */
  commitUnseen(change: (doc: Y.Doc) => void): Promise<boolean>;
}

/** Origin of the relay's fenced writes. */
const FENCED_ORIGIN = Symbol('capsync:fenced-write');

/**
 * The fenced writes of one document (its CP area): the token and revision checks, made right
 * before the write, and their order: a document's fenced writes run one at a time, so no write
 * passes its checks against a state another write is about to change. The caller has checked
 * the lease with the lock authority; how the write is kept unseen until committed is the
 * document's (FencedWriteHost.commitUnseen).
 */
export class FencedWrites {
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly host: FencedWriteHost) {}

  /** Writes `value` under `key` if `token` is at least the entry's and (with `ifRev`) the entry is still at that revision. */
  write(key: string, value: unknown, token: number, ifRev?: number): Promise<FencedOutcome> {
    const run = this.tail.then(() => this.writeNow(key, value, token, ifRev));
    this.tail = run.catch(() => {});
    return run;
  }

  private async writeNow(key: string, value: unknown, token: number, ifRev: number | undefined): Promise<FencedOutcome> {
    const doc = this.host.current();
    if (!doc) return { code: 'unavailable', message: 'the document is recovering; retry the fenced write' };
    // CP: cannot be sure it would commit. (Storage lost during the commit itself still holds
    // the document until the commit goes through or the relay closes.)
    if (!this.host.storageReachable()) return { code: 'unavailable', message: 'storage cannot be reached; retry the fenced write' };
    const current = readFenced(doc, key);
    if (current && token < current.token) {
      return { code: 'stale-token', message: `the token given for "${key}" is stale: a newer lease has written since` };
    }
    if (ifRev !== undefined && (current?.rev ?? 0) !== ifRev) {
      return { code: 'conflict', message: `"${key}" is at revision ${current?.rev ?? 0}, not ${ifRev}: it changed since it was read` };
    }
    const committed = await this.host.commitUnseen((d) => writeFenced(d, key, value, token, FENCED_ORIGIN));
    return committed ? { code: '' } : { code: 'storage-failure', message: 'the fenced write could not be stored' };
  }
}
