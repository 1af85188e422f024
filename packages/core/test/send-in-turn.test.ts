import { describe, expect, it } from 'vitest';
import { BEHIND_BYTES, InTurn, sendInTurn } from '../src/session/send-in-turn.js';

const pieces = [1, 2, 3, 4, 5].map((n) => new Uint8Array([n]));

/** A channel whose written-out callbacks the test runs. */
function recorder(accept = (): boolean => true) {
  const sent: { piece: number; last: boolean }[] = [];
  const callbacks: (() => void)[] = [];
  const send = (piece: Uint8Array, last: boolean, onWritten: (() => void) | undefined): boolean => {
    if (!accept()) return false;
    sent.push({ piece: piece[0]!, last });
    if (onWritten) callbacks.push(onWritten);
    return true;
  };
  return { sent, callbacks, send };
}

describe('sendInTurn', () => {
  it('sends `ahead` pieces at once and each next one when an earlier one was written, the last marked', () => {
    const r = recorder();
    expect(sendInTurn(pieces, 2, r.send)).toBe(true);
    expect(r.sent.map((s) => s.piece)).toEqual([1, 2]);
    r.callbacks.shift()!();
    expect(r.sent.map((s) => s.piece)).toEqual([1, 2, 3]);
    while (r.callbacks.length > 0) r.callbacks.shift()!();
    expect(r.sent).toEqual([1, 2, 3, 4, 5].map((piece) => ({ piece, last: piece === 5 })));
  });

  it('a channel that calls back at once gets every piece in order, once', () => {
    const sent: number[] = [];
    sendInTurn(pieces, 2, (piece, _last, onWritten) => {
      sent.push(piece[0]!);
      onWritten?.();
      return true;
    });
    expect(sent).toEqual([1, 2, 3, 4, 5]);
  });

  it('stops once a send returns false (the session closed); reports the first send', () => {
    let open = true;
    const r = recorder(() => open);
    sendInTurn(pieces, 2, r.send);
    open = false;
    r.callbacks.shift()!();
    r.callbacks.shift()?.();
    expect(r.sent.map((s) => s.piece)).toEqual([1, 2]);
    expect(sendInTurn(pieces, 2, recorder(() => false).send)).toBe(false);
  });

  it('one piece is the last', () => {
    const r = recorder();
    sendInTurn([pieces[0]!], 2, r.send);
    expect(r.sent).toEqual([{ piece: 1, last: true }]);
  });

  it('rush sends what is left at once, in order; the written-out callbacks of earlier pieces then send nothing more', () => {
    const r = recorder();
    const turn = new InTurn(pieces, 2, r.send);
    expect(turn.done).toBe(false);
    turn.rush();
    expect(turn.done).toBe(true);
    expect(r.sent).toEqual([1, 2, 3, 4, 5].map((piece) => ({ piece, last: piece === 5 })));
    while (r.callbacks.length > 0) r.callbacks.shift()!();
    expect(r.sent).toHaveLength(5);
  });

  it('with a room, each piece after the first waits for it, and goes when woken', () => {
    const r = recorder();
    let room = true;
    const wakes = new Set<() => void>();
    const turn = new InTurn(pieces, 2, r.send, {
      hasRoom: (wake) => {
        if (!room) wakes.add(wake);
        return room;
      },
    });
    expect(r.sent.map((s) => s.piece)).toEqual([1, 2]);
    room = false;
    r.callbacks.shift()!();
    r.callbacks.shift()!();
    // Written out, but no room: nothing more goes, and the same wake is registered once.
    expect(r.sent.map((s) => s.piece)).toEqual([1, 2]);
    expect(wakes.size).toBe(1);
    room = true;
    for (const wake of wakes) wake();
    // Woken: up to `ahead` again, not everything left.
    expect(r.sent.map((s) => s.piece)).toEqual([1, 2, 3, 4]);
    expect(turn.done).toBe(false);
    // rush does not wait for room.
    room = false;
    turn.rush();
    expect(r.sent).toEqual([1, 2, 3, 4, 5].map((piece) => ({ piece, last: piece === 5 })));
  });

  it('the first piece goes without asking the room (its caller did)', () => {
    const r = recorder();
    const asked: number[] = [];
    new InTurn(pieces, 2, r.send, { hasRoom: () => (asked.push(r.sent.length), false) });
    expect(r.sent.map((s) => s.piece)).toEqual([1]);
    expect(asked).toEqual([1]);
  });

  it('holds messages behind the state, sent right after its last piece in order; past the bound the caller rushes', () => {
    const r = recorder();
    const turn = new InTurn(pieces, 2, r.send);
    const out: string[] = [];
    expect(turn.behind(10, () => out.push(`a after ${r.sent.length}`))).toBe(true);
    expect(turn.behind(10, () => out.push(`b after ${r.sent.length}`))).toBe(true);
    // Too much held: not held (the caller rushes, which sends what was held, then sends its own).
    expect(turn.behind(BEHIND_BYTES, () => out.push('never'))).toBe(false);
    while (r.callbacks.length > 0) r.callbacks.shift()!();
    expect(out).toEqual(['a after 5', 'b after 5']);
    // Done: nothing more is held.
    expect(turn.behind(1, () => out.push('never'))).toBe(false);
  });

  it('what is held is dropped with the pieces when stopped', () => {
    const r = recorder();
    const turn = new InTurn(pieces, 2, r.send);
    const out: string[] = [];
    turn.behind(1, () => out.push('held'));
    turn.stop();
    while (r.callbacks.length > 0) r.callbacks.shift()!();
    expect(turn.done).toBe(true);
    expect(out).toEqual([]);
    expect(r.sent).toHaveLength(2);
  });

  it('holdInstead drops what is held for one message that covers it, sent after the last piece, even if that send throws', () => {
    const r = recorder();
    const turn = new InTurn(pieces, 2, (piece, last, onWritten) => {
      r.send(piece, last, onWritten);
      if (last) throw new Error('the step 2 failed');
      return true;
    });
    const out: string[] = [];
    turn.behind(10, () => out.push('dropped'));
    expect(turn.holdInstead(() => out.push(`diff after ${r.sent.length}`))).toBe(true);
    // Nothing more is held once a covering message is.
    expect(turn.behind(1, () => out.push('never'))).toBe(false);
    expect(() => turn.rush()).toThrow('the step 2 failed');
    expect(out).toEqual(['diff after 5']);
    expect(turn.holdInstead(() => out.push('never'))).toBe(false);
  });
});
