import { describe, expect, it } from 'vitest';
import { startAttackedRelay } from '../support/attack.js';
import { connectAs, replicaAs, updateOf } from '../support/client-ids.js';
import { ProtocolClient } from '../support/protocol-client.js';
import { mintToken } from '../support/tokens.js';

/**
 * Fourth review of issue 11: the README says structs under a client id that is not the
 * writer's ("another identity's, or nobody's") at clocks the relay holds must be what it holds.
 * admitUpdate builds that set as `owner !== writer.identity`: for a writer whose token has no
 * `sub` (identity undefined) an id nobody owns compares equal (undefined === undefined) and is
 * never checked. A backend service writing with a token without `sub` under its long-lived
 * client id S owns nothing (by design); mallory, a writer with `sub`, writes at S's next clock
 * first without declaring S (S is not new: neither claimed nor carried). The service's next
 * edit at that clock is acknowledged, and Yjs skips it as known: acknowledged and lost, its
 * replica diverged for good with an equal state vector (issue 11's point 6 again).
 */

const SECRET = 'adversarial-rev4-nosub-known-clock-0123456789';

function outcome(c: ProtocolClient): Promise<string> {
  const seq = c.seq;
  return c.ackedOrClosed(seq);
}

describe('adversarial (issue 11, fourth review): known clocks of a writer without sub', () => {
  it("issue-11 attack 6 (fourth review, no-sub known clock): mallory's struct at a no-sub service's next clock does not make the service's edit there acknowledged and lost", async () => {
    await using relay = await startAttackedRelay(['--auth-secret', SECRET]);
    const url = `${relay.url}/nosub-known`;
    const serviceToken = await mintToken(SECRET, { lifetimeS: 3600 }); // no sub
    const service = await ProtocolClient.synced(url, { headers: { authorization: `Bearer ${serviceToken}` } });
    const S = service.doc.clientID;
    service.type('status:ok ');
    expect(await outcome(service)).toBe('acked');

    // The service's next edit, made before mallory's struct reached it (in flight, or the
    // service was briefly offline).
    const own = replicaAs(service, S);
    const next = updateOf(own, () => own.getText('t').insert(own.getText('t').length, 'status:degraded '));

    // Mallory reads S's state and writes one struct at S's next clock (undeclared: S is not new).
    const mallory = await connectAs(url, SECRET, 'mallory', { capabilities: ['writes:123456789'] });
    const forged = replicaAs(mallory, S);
    mallory.sendMessage({ type: 'update', update: updateOf(forged, () => forged.getText('t').insert(forged.getText('t').length, 'PWNED ')) });
    const squat = await outcome(mallory);
    console.log(`mallory at the service's next clock: ${squat}`);

    // The service, which did not see it yet, writes at that clock.
    service.sendMessage({ type: 'update', update: next });
    const result = await outcome(service);
    await service.close();

    const check = await connectAs(url, SECRET, 'carol');
    console.log(`service's edit at its own next clock: ${result}; stored: ${JSON.stringify(check.text)}`);
    // Either refused (visible to the service) or stored: never acknowledged and skipped.
    if (result === 'acked') expect(check.text).toContain('status:degraded');
    else expect(result).toMatch(/^closed 4403/);
    await check.close();
  }, 60_000);
});
