import { AuthError, CapsyncError } from '@capsync/core';
import type { AccessControl, AccessGrant, AuthorizeDocOptions, Principal } from './access.js';

/** What an authorization callback is asked (see RelayOptions.authorize). */
export interface AuthorizeRequest {
  /** The token the client presented (query, sub-protocol or Authorization header), if any. */
  token: string | undefined;
  docName: string;
  /** Aborted when the relay stops waiting (the timeout): stop what you started for it. */
  signal: AbortSignal;
}

/** Callback calls in flight at once, at most (the whole relay); past it a document is refused for now. */
export const MAX_AUTHORIZATIONS_IN_FLIGHT = 1_000;

/**
 * Callback calls of re-checks of open sessions (live permissions) in flight at once, at most,
 * counted apart from opens: opens filling MAX_AUTHORIZATIONS_IN_FLIGHT (a client opening
 * documents in a flood against a slow backend) do not leave the re-checks undecided. Twice
 * what the interval re-checks ask at once (PermissionRechecks), so refreshes have room too.
 */
export const RECHECK_AUTHORIZATIONS_IN_FLIGHT = 256;

/** Its answer: the permission on that document (`none`: refused) and who the client is. */
export interface AuthorizeAnswer {
  permission: 'read' | 'write' | 'none';
  /** The identity (as a token's `sub`): owns the client ids it writes under. */
  identity?: string;
  /** When the permission stops holding (ms since epoch): the session is closed then (4401). */
  expiresAt?: number;
}

export type AuthorizeCallback = (request: AuthorizeRequest) => AuthorizeAnswer | Promise<AuthorizeAnswer>;

/**
 * Access decided by the app, per token and document (`authorize` in createRelay, or the CLI's
 * `--auth-webhook`): the relay verifies nothing of a client's token itself and asks for each
 * document a connection, session or HTTP request opens. Relay credentials (peers of the mesh, a
 * forwarding lock client) are still checked by `relays` (the shared secret or peer token): the
 * callback is never asked about them, so it cannot make a client a relay.
 *
 * Contract of the callback: called once per document opened (a multiplexed socket asks per
 * session; its other sessions are served meanwhile), at most `timeoutMs`; a callback that throws,
 * rejects or times out refuses that one document with 'unavailable' (close 1013: try again), and
 * `none` refuses it with 'forbidden' (4403). Open sessions are asked about again (live
 * permissions: a token refresh, `--auth-recheck-interval-ms`), within a bound of their own
 * (RECHECK_AUTHORIZATIONS_IN_FLIGHT).
 */
export class CallbackAccess implements AccessControl {
  readonly mode = 'callback' as const;
  private inFlight = 0;
  private rechecksInFlight = 0;

  constructor(
    private readonly callback: AuthorizeCallback,
    /** Relay trust: the mesh's shared secret or peer token (a JwtAccess or OpenAccess). */
    private readonly relays: AccessControl,
    private readonly timeoutMs = 5_000,
  ) {}

  async authenticate(token: string | undefined): Promise<Principal> {
    // A relay credential is the relays' to check; anything else is the callback's, per document.
    const relay = await this.relays.authenticate(token).catch(() => null);
    if (relay?.relay) return relay;
    return { token };
  }

  authorizeDoc(principal: Principal, docName: string, options?: AuthorizeDocOptions): AccessGrant | Promise<AccessGrant> {
    if (principal.relay) return this.relays.authorizeDoc(principal, docName);
    return this.ask(principal.token, docName, options?.recheck === true);
  }

  async authorize(token: string | undefined, docName: string): Promise<AccessGrant> {
    return this.authorizeDoc(await this.authenticate(token), docName);
  }

  private async ask(token: string | undefined, docName: string, recheck = false): Promise<AccessGrant> {
    if (recheck ? this.rechecksInFlight >= RECHECK_AUTHORIZATIONS_IN_FLIGHT : this.inFlight >= MAX_AUTHORIZATIONS_IN_FLIGHT) {
      throw new CapsyncError('unavailable', 'too many authorizations in flight; try again');
    }
    if (recheck) this.rechecksInFlight++;
    else this.inFlight++;
    const abort = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    let answer: AuthorizeAnswer;
    try {
      answer = await Promise.race([
        Promise.resolve().then(() => this.callback({ token, docName, signal: abort.signal })),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
        }),
      ]);
    } catch (err) {
      abort.abort();
      throw new CapsyncError('unavailable', `authorization could not be decided: ${(err as Error).message}`, { cause: err });
    } finally {
      clearTimeout(timer);
      if (recheck) this.rechecksInFlight--;
      else this.inFlight--;
    }
    if (answer?.permission === 'none') throw new AuthError('forbidden', `no access to document "${docName}"`);
    if (answer?.permission !== 'read' && answer?.permission !== 'write') throw new CapsyncError('unavailable', 'authorization answered no permission (read, write or none)');
    if (answer.expiresAt !== undefined && !Number.isFinite(answer.expiresAt)) throw new CapsyncError('unavailable', 'authorization answered an expiresAt that is not a time');
    if (answer.expiresAt !== undefined && answer.expiresAt <= Date.now()) throw new AuthError('unauthorized', 'the permission has expired');
    return {
      permission: answer.permission,
      ...(typeof answer.identity === 'string' ? { subject: answer.identity } : {}),
      ...(answer.expiresAt !== undefined ? { expiresAt: answer.expiresAt } : {}),
    };
  }
}
