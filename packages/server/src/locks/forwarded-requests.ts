/**
 * The lock requests a forwarding relay sends to its lock authority, matched with their
 * answers: each request has an id, a deadline and (for an acquire) the caller's abort signal;
 * it waits in call order for a link, goes out on one link, and is settled by that link's
 * answer, by its deadline, or by the link's loss. The link itself is AuthorityLink's
 * (authority-link.ts).
 */
import {
  UnavailableError,
  encodeMessage,
  errorFromCode,
  type LockOp,
  type LockReplyMessage,
  type LockRequestMessage,
} from '@capsync/core';
import type { Logger } from '../logger.js';
import type { AuthorityLink, AuthorityLinkHandler, Link } from './authority-link.js';
import { shuttingDown, withdrawn } from './lock-backend.js';

/** A request sent, or waiting to be sent, to the authority. */
interface Pending {
  msg: LockRequestMessage;
  /** The link it was sent on; null while it waits for a link. */
  link: Link | null;
  /** Monotonic deadline (performance.now()). */
  deadline: number;
  timer: NodeJS.Timeout;
  resolve(reply: LockReplyMessage): void;
  reject(err: unknown): void;
  onAbort: (() => void) | null;
  signal: AbortSignal | undefined;
}

/** Operations that may be sent again on a new link when the one they went out on died. */
const IDEMPOTENT: ReadonlySet<LockOp> = new Set(['check', 'renew']);

/**
 * Contract:
 * - `request` resolves only with the authority's successful answer, and rejects with the
 *   authority's refusal (as its typed error), or with UnavailableError: at its deadline, when
 *   its caller aborts, at once while the authority refuses this relay, or when the link it went
 *   out on is lost (renew and check, safe to repeat, are sent again on the next link instead,
 *   within their deadline).
 * - Requests go out in call order, queued ones included, on the current link.
 * - An acquire whose caller gave up after it was sent may still be granted: that late grant is
 *   released at once (on the link it came on), so it does not block the key.
 */
export class ForwardedRequests implements AuthorityLinkHandler {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /** Requests waiting for a link, in call order. */
  private readonly queue: Pending[] = [];
  /** Requests sent on each link and not settled yet. */
  private readonly sent = new Map<Link, Set<Pending>>();
  /** Acquires whose caller gave up after they were sent: a grant that still comes is released. */
  private readonly late = new Map<number, { key: string; owner: string; link: Link }>();
  private links!: AuthorityLink;
  private closed = false;

  constructor(
    private readonly url: string,
    /** Deadline of the release of a late grant. */
    private readonly opTimeoutMs: number,
    private readonly log: Logger,
  ) {}

  /** The link the requests go over (set once, right after both are made: each refers to the other). */
  attach(links: AuthorityLink): void {
    this.links = links;
  }

  /** Sends one request; see the class contract. */
  request(fields: Omit<LockRequestMessage, 'type' | 'id'>, timeoutMs: number, signal?: AbortSignal): Promise<LockReplyMessage> {
    if (this.closed) return Promise.reject(shuttingDown());
    const refusal = this.links.refusal;
    if (refusal) return Promise.reject(refusal);
    if (signal?.aborted) return Promise.reject(withdrawn());
    const msg: LockRequestMessage = { type: 'lock-request', id: this.nextId++, ...fields };
    return new Promise<LockReplyMessage>((resolve, reject) => {
      const p: Pending = {
        msg,
        link: null,
        deadline: performance.now() + timeoutMs,
        timer: setTimeout(() => this.giveUp(p, this.timeoutError(p, timeoutMs)), timeoutMs),
        resolve,
        reject,
        onAbort: null,
        signal,
      };
      if (signal) {
        p.onAbort = () => this.giveUp(p, withdrawn());
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      this.pending.set(msg.id, p);
      const link = this.links.ready;
      if (link) this.send(link, p);
      else {
        this.queue.push(p);
        this.links.ensureConnecting();
      }
    }).then((reply) => {
      if (reply.code !== '') throw errorFromCode(reply.code, reply.message);
      return reply;
    });
  }

  /** Settles every request with `err`; later ones reject at once. */
  close(err: UnavailableError): void {
    this.closed = true;
    for (const p of Array.from(this.pending.values())) this.settle(p, err);
    this.queue.length = 0;
    this.late.clear();
  }

  // ---- AuthorityLinkHandler ----

  ready(): void {
    this.flush();
  }

  reply(link: Link, reply: LockReplyMessage): void {
    const p = this.pending.get(reply.id);
    if (p && p.link === link) return this.settle(p, reply);
    const late = this.late.get(reply.id);
    if (!late || late.link !== link) return;
    this.late.delete(reply.id);
    if (reply.code === '') {
      // Granted after its requester gave up: nobody will use it. Give it back at once.
      this.log.info({ key: late.key, token: reply.token }, 'releasing a lock granted after its requester gave up');
      this.request({ op: 'release', key: late.key, token: reply.token, ttlMs: 0, waitMs: 0, owner: late.owner }, this.opTimeoutMs).catch((err: unknown) =>
        this.log.info({ key: late.key, token: reply.token, err: (err as Error).message }, 'releasing a late grant failed; it runs out by itself'),
      );
    }
  }

  lost(link: Link | null, why: string): void {
    // Closing withdraws at the authority whatever still waited there for this link.
    for (const [id, l] of this.late) if (l.link === link) this.late.delete(id);
    // What was sent on it: renew and check go again on the next link, the rest fail now.
    const refusal = this.links.refusal;
    for (const p of Array.from((link && this.sent.get(link)) ?? [])) {
      this.unsent(p);
      if (!this.closed && !refusal && IDEMPOTENT.has(p.msg.op) && performance.now() < p.deadline) this.queue.push(p);
      else this.settle(p, new UnavailableError(`link to the lock authority lost before it answered (${why}); the outcome of ${p.msg.op} "${p.msg.key}" is unknown`));
    }
    if (link) this.sent.delete(link);
    if (refusal) for (const p of this.queue.slice()) this.settle(p, refusal);
    // A rotation's successor failed (or a drained link closed): the current link goes on.
    this.flush();
  }

  inflight(link: Link): number {
    return this.sent.get(link)?.size ?? 0;
  }

  // ---- requests ----

  private flush(): void {
    const link = this.links.ready;
    if (!link) return;
    for (const p of this.queue.splice(0)) this.send(link, p);
  }

  private send(link: Link, p: Pending): void {
    p.link = link;
    let onLink = this.sent.get(link);
    if (!onLink) this.sent.set(link, (onLink = new Set()));
    onLink.add(p);
    this.links.send(link, encodeMessage(p.msg));
  }

  /** `p` is no longer on the link it was sent on. */
  private unsent(p: Pending): void {
    const link = p.link;
    if (!link) return;
    p.link = null;
    const onLink = this.sent.get(link);
    onLink?.delete(p);
    if (onLink?.size === 0) this.sent.delete(link);
  }

  private timeoutError(p: Pending, timeoutMs: number): UnavailableError {
    const what = `${p.msg.op} "${p.msg.key}"`;
    if (p.link) return new UnavailableError(`lock authority ${this.url} did not answer within ${timeoutMs} ms (${what})`);
    return new UnavailableError(`lock authority ${this.url} unreachable for ${timeoutMs} ms (${what}): ${this.links.lastError}`);
  }

  /** The caller gives up (deadline, abort): a sent acquire may still be granted, so remember it. */
  private giveUp(p: Pending, err: UnavailableError): void {
    if (!this.pending.has(p.msg.id)) return;
    if (p.link && p.msg.op === 'acquire' && !p.link.closed) this.late.set(p.msg.id, { key: p.msg.key, owner: p.msg.owner ?? '', link: p.link });
    this.settle(p, err);
  }

  /** Ends a request: with the authority's reply, or with an error. */
  private settle(p: Pending, outcome: LockReplyMessage | Error): void {
    if (!this.pending.delete(p.msg.id)) return;
    clearTimeout(p.timer);
    if (p.onAbort) p.signal?.removeEventListener('abort', p.onAbort);
    const i = this.queue.indexOf(p);
    if (i >= 0) this.queue.splice(i, 1);
    const link = p.link;
    if (link) {
      this.unsent(p);
      this.links.settled(link);
    }
    if (outcome instanceof Error) p.reject(outcome);
    else p.resolve(outcome);
  }
}
