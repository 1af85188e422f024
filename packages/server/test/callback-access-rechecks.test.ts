/**
 * An authorization callback's room for re-checks of open sessions (live permissions): opens
 * filling MAX_AUTHORIZATIONS_IN_FLIGHT (a client opening documents in a flood against a slow
 * backend) must not leave every re-check undecided, or a revoked user's sessions would keep
 * their permission while the flood lasts.
 */
import { expect, it } from 'vitest';
import { OpenAccess } from '../src/auth/access.js';
import { CallbackAccess, MAX_AUTHORIZATIONS_IN_FLIGHT, type AuthorizeAnswer } from '../src/auth/callback-access.js';

it('a re-check is asked while opens fill the callback bound; an open past the bound is refused unavailable', async () => {
  const release: (() => void)[] = [];
  const access = new CallbackAccess(
    ({ docName }) =>
      docName === 'slow'
        ? new Promise<AuthorizeAnswer>((resolve) => release.push(() => resolve({ permission: 'write', identity: 'mallory' })))
        : { permission: 'none' },
    new OpenAccess(),
    60_000,
  );
  const principal = await access.authenticate('t');
  const opens = Array.from({ length: MAX_AUTHORIZATIONS_IN_FLIGHT }, () => access.authorizeDoc(principal, 'slow') as Promise<unknown>);
  await expect(access.authorizeDoc(principal, 'slow')).rejects.toMatchObject({ code: 'unavailable' });
  // The re-check is answered (the user was revoked: 'forbidden'), not 'unavailable'.
  await expect(access.authorizeDoc(principal, 'notes', { recheck: true })).rejects.toMatchObject({ code: 'forbidden' });
  for (const r of release) r();
  await Promise.all(opens);
});
