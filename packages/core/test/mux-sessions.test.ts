import { describe, expect, it } from 'vitest';
import {
  CapsyncError,
  CloseCode,
  MuxSessions,
  closeCodeFor,
  SessionChannel,
  channelPair,
  encodeMessage,
  encodeMuxFrame,
  type Channel,
  type ChannelHandler,
  type Message,
  type SessionOpenMessage,
} from '../src/index.js';
import { channelConformance } from '../src/conformance/index.js';

/** One side of a multiplexed socket over an in-memory channel, recording what reaches its owner. */
class Side {
  readonly sessions: MuxSessions;
  readonly control: Message[] = [];
  readonly accepted: SessionChannel[] = [];
  readonly broken: CapsyncError[] = [];
  socketClose: { code: number; reason: string } | null = null;
  /** How opens of the other side are answered: a channel (accept) or a close code (refuse). */
  decide: (msg: SessionOpenMessage) => 'accept' | number = () => 'accept';
  private waiters: (() => void)[] = [];

  constructor(readonly socket: Channel, dialled: boolean) {
    this.sessions = new MuxSessions(socket, dialled, {
      open: (msg) => {
        const d = this.decide(msg);
        if (d === 'accept') {
          const channel = new SessionChannel(msg.sid, this.sessions);
          this.sessions.accept(channel);
          this.accepted.push(channel);
        } else this.sessions.refuse(msg.sid, d, `refused ${msg.name}`);
      },
      control: (msg) => void this.control.push(msg),
    });
    socket.attach({
      message: (frame) => {
        try {
          this.sessions.receive(frame);
        } catch (err) {
          this.broken.push(err as CapsyncError);
        }
        this.wake();
      },
      close: (code, reason) => {
        this.socketClose = { code, reason };
        this.sessions.socketClosed(code, reason);
        this.wake();
      },
      error() {},
    });
  }

  /** Resolves once `ready()` holds (re-checked after every frame); 5 s at most. */
  until<T>(ready: () => T | undefined | false): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('timed out')), 5_000);
      const check = (): void => {
        const v = ready();
        if (v === undefined || v === false) return void this.waiters.push(check);
        clearTimeout(timer);
        resolve(v);
      };
      check();
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

function socketPair(): { dialler: Side; acceptor: Side } {
  const [a, b] = channelPair();
  return { dialler: new Side(a, true), acceptor: new Side(b, false) };
}

const DOC = { kind: 'doc' as const, subdoc: '', capabilities: [] as string[] };

/** Records one channel's events. */
function recorder(): ChannelHandler & { got: Uint8Array[]; closes: { code: number; reason: string }[] } {
  const r = {
    got: [] as Uint8Array[],
    closes: [] as { code: number; reason: string }[],
    message: (b: Uint8Array) => void r.got.push(b),
    close: (code: number, reason: string) => void r.closes.push({ code, reason }),
    error() {},
  };
  return r;
}

describe('a session of a multiplexed socket: Channel conformance', () => {
  for (const c of channelConformance) {
    it(c.name, () =>
      c.run({
        pair: async () => {
          const { dialler, acceptor } = socketPair();
          const ours = dialler.sessions.open({ ...DOC, name: 'conformance' });
          const theirs = await acceptor.until(() => acceptor.accepted[0]);
          return [ours, theirs];
        },
      }),
    );
  }
});

describe('MuxSessions', () => {
  it('opens odd sids from the dialling side, in order, and routes each frame to its session', async () => {
    const { dialler, acceptor } = socketPair();
    const one = dialler.sessions.open({ ...DOC, name: 'one' });
    const two = dialler.sessions.open({ ...DOC, name: 'two' });
    expect([one.sid, two.sid]).toEqual([1, 3]);
    one.send(new Uint8Array([1]));
    two.send(new Uint8Array([2]));
    await acceptor.until(() => acceptor.accepted.length === 2);
    const [r1, r2] = [recorder(), recorder()];
    acceptor.accepted[0]!.attach(r1);
    acceptor.accepted[1]!.attach(r2);
    await acceptor.until(() => r1.got.length === 1 && r2.got.length === 1);
    expect([r1.got[0]![0], r2.got[0]![0]]).toEqual([1, 2]);
    expect(acceptor.sessions.size).toBe(2);
  });

  it('a refused open closes that session alone, with the code; frames already sent for it are dropped', async () => {
    const { dialler, acceptor } = socketPair();
    acceptor.decide = (msg) => (msg.name === 'secret' ? 4403 : 'accept');
    const secret = dialler.sessions.open({ ...DOC, name: 'secret' });
    const fine = dialler.sessions.open({ ...DOC, name: 'fine' });
    const rs = recorder();
    secret.attach(rs);
    secret.send(new Uint8Array([9])); // sent before the refusal arrives: dropped over there
    fine.send(new Uint8Array([1]));
    await dialler.until(() => rs.closes.length === 1);
    expect(rs.closes[0]).toEqual({ code: 4403, reason: 'refused secret' });
    expect(dialler.sessions.size).toBe(1);
    await acceptor.until(() => acceptor.accepted.length === 1);
    const rf = recorder();
    acceptor.accepted[0]!.attach(rf);
    await acceptor.until(() => rf.got.length === 1);
    expect(acceptor.broken).toEqual([]);
  });

  it('close ends the session on both sides with its code; crossing closes are ignored', async () => {
    const { dialler, acceptor } = socketPair();
    const ours = dialler.sessions.open({ ...DOC, name: 'x' });
    const mine = recorder();
    ours.attach(mine);
    const theirs = await acceptor.until(() => acceptor.accepted[0]);
    const other = recorder();
    theirs.attach(other);
    ours.close(4000, 'done');
    theirs.close(4001, 'also done'); // crosses ours
    await acceptor.until(() => other.closes.length === 1);
    await dialler.until(() => dialler.sessions.size === 0 && acceptor.sessions.size === 0);
    expect(mine.closes).toEqual([{ code: 4000, reason: 'done' }]);
    expect(other.closes).toEqual([{ code: 4001, reason: 'also done' }]);
    // The socket is fine, and a frame for the closed session is dropped, not an error.
    dialler.socket.send(encodeMuxFrame(1, new Uint8Array([0])));
    dialler.sessions.sendControl({ type: 'ping', id: 1 });
    await acceptor.until(() => acceptor.control.length === 1);
    expect(acceptor.broken).toEqual([]);
    expect(dialler.broken).toEqual([]);
  });

  it('the socket closing ends every session with its code', async () => {
    const { dialler, acceptor } = socketPair();
    const sessions = [dialler.sessions.open({ ...DOC, name: 'a' }), dialler.sessions.open({ ...DOC, name: 'b' })];
    const rs = sessions.map(() => recorder());
    sessions.forEach((s, i) => s.attach(rs[i]!));
    await acceptor.until(() => acceptor.accepted.length === 2);
    acceptor.socket.close(4429, 'slow-consumer: too slow');
    await dialler.until(() => rs.every((r) => r.closes.length === 1));
    expect(rs.map((r) => r.closes[0]!.code)).toEqual([4429, 4429]);
    expect(dialler.sessions.size).toBe(0);
  });

  /** Frames the acceptor must refuse by breaking the socket (the owner closes it 4400: bad-message or unknown-message-type). */
  const breaking: [string, Uint8Array][] = [
    ['a frame for a sid never opened', encodeMuxFrame(7, encodeMessage({ type: 'ping', id: 1 }))],
    ['a frame for a sid of its own parity never opened', encodeMuxFrame(2, encodeMessage({ type: 'ping', id: 1 }))],
    ['a malformed sid', new Uint8Array([0x80])],
    ['a malformed control message', encodeMuxFrame(0, new Uint8Array([100, 99]))],
    ['an open of an even sid (the acceptor opens those)', encodeMuxFrame(0, encodeMessage({ type: 'session-open', sid: 2, ...DOC, name: 'x' }))],
    ['an open of sid 0', encodeMuxFrame(0, encodeMessage({ type: 'session-open', sid: 0, ...DOC, name: 'x' }))],
    ['a close of a session never opened', encodeMuxFrame(0, encodeMessage({ type: 'session-close', sid: 9, code: 1000, reason: '' }))],
    ['an opened for a session the acceptor never opened', encodeMuxFrame(0, encodeMessage({ type: 'session-opened', sid: 2, permission: 'write' }))],
  ];
  for (const [what, frame] of breaking) {
    it(`breaks the socket (4400) on ${what}`, async () => {
      const { dialler, acceptor } = socketPair();
      dialler.socket.send(frame);
      await acceptor.until(() => acceptor.broken.length === 1);
      expect(acceptor.broken[0]).toBeInstanceOf(CapsyncError);
      expect(closeCodeFor(acceptor.broken[0]!.code)).toBe(CloseCode.BadMessage);
    });
  }

  it('breaks the socket when an open reuses a sid (sids are never reused)', async () => {
    const { dialler, acceptor } = socketPair();
    dialler.sessions.open({ ...DOC, name: 'first' }); // sid 1
    dialler.sessions.open({ ...DOC, name: 'second' }); // sid 3
    dialler.socket.send(encodeMuxFrame(0, encodeMessage({ type: 'session-open', sid: 3, ...DOC, name: 'again' })));
    await acceptor.until(() => acceptor.broken.length === 1);
    expect(acceptor.broken[0]!.message).toMatch(/opened before/);
    expect(acceptor.accepted.map((c) => c.sid)).toEqual([1, 3]);
  });

  it('passes the other messages of the control session to the owner', async () => {
    const { dialler, acceptor } = socketPair();
    dialler.sessions.sendControl({ type: 'hello', protocolVersion: 1, capabilities: ['ack'] });
    dialler.sessions.sendControl({ type: 'ping', id: 4 });
    await acceptor.until(() => acceptor.control.length === 2);
    expect(acceptor.control.map((m) => m.type)).toEqual(['hello', 'ping']);
  });
});
