import { describe, expect, it } from 'vitest';
import { SentLog } from '@capsync/core';
import { DocReplication } from '../src/mesh/replication.js';

describe('DocReplication', () => {
  it('counts a peer as a holder only through its acks, not for changes it sent us', () => {
    const r = new DocReplication(2);
    r.meet('b');
    const fromB = r.recordApplied(10, 'b');
    r.recordLocalDurable(fromB);
    // b forwarded the change before its own store committed it: not durable there yet.
    expect(r.holders(fromB)).toBe(1);
    expect(r.lag('b')).toEqual({ updates: 0, bytes: 0 });
    r.recordPeerDurable('b', fromB);
    expect(r.holders(fromB)).toBe(2);
  });

  it('resolves quorum waiters once a majority acked, and cancels', () => {
    const r = new DocReplication(2);
    r.meet('b');
    const seq = r.recordApplied(5, null);
    let resolved = 0;
    r.whenQuorum(seq, () => resolved++);
    const cancel = r.whenQuorum(seq, () => resolved++);
    cancel();
    r.recordLocalDurable(seq);
    expect(resolved).toBe(0);
    r.recordPeerDurable('b', seq);
    expect(resolved).toBe(1);
  });

  it('keeps the log bounded by what is not yet durable everywhere: no peers means nothing kept', () => {
    const r = new DocReplication(1);
    for (let i = 0; i < 5_000; i++) r.recordLocalDurable(r.recordApplied(1, null));
    expect(r.retained).toBe(0);
    // With a peer, changes stay until the peer acks them, and lag reports them.
    r.meet('b');
    for (let i = 0; i < 3_000; i++) r.recordLocalDurable(r.recordApplied(2, null));
    expect(r.lag('b')).toEqual({ updates: 3_000, bytes: 6_000 });
    r.recordPeerDurable('b', r.applied);
    expect(r.retained).toBe(0);
    expect(r.lag('b')).toEqual({ updates: 0, bytes: 0 });
  });

  it('a forgotten peer (an old incarnation) no longer pins the log', () => {
    const r = new DocReplication(2);
    r.meet('old');
    for (let i = 0; i < 2_000; i++) r.recordLocalDurable(r.recordApplied(1, null));
    expect(r.retained).toBe(2_000);
    r.forget('old');
    expect(r.retained).toBe(0);
    expect(r.peers).toEqual([]);
  });

  it('forgets the oldest changes past maxLog', () => {
    const r = new DocReplication(2, 100);
    r.meet('b');
    for (let i = 0; i < 1_000; i++) r.recordApplied(1, null);
    expect(r.retained).toBe(100);
    expect(r.lag('b').updates).toBe(100);
  });
});

describe('SentLog', () => {
  it('turns an ack of messages 1..n into the document position the nth was sent at', () => {
    const log = new SentLog();
    log.record(3);
    log.record(7);
    log.record(9);
    expect(log.acked(2)).toBe(7);
    expect(log.acked(2)).toBe(0);
    expect(log.acked(3)).toBe(9);
  });
});
