import { describe, expect, it } from 'vitest';
import { QUEUED_FRAME_OVERHEAD, SocketInputQueue } from '../src/mux/socket-input-queue.js';

describe('SocketInputQueue', () => {
  it('charges each queued frame what holding it costs, so tiny frames cannot hold ~100x the bound', () => {
    const q = new SocketInputQueue(64 * 1024);
    const loading = { queueing: true };
    let admitted = 0;
    while (q.admit(1, loading, 1)) admitted++;
    // One-byte frames: the bound counts their holding cost, not one byte each.
    expect(admitted).toBe(Math.floor((64 * 1024) / (1 + QUEUED_FRAME_OVERHEAD)));
  });

  it('forgets what a session held once it handles its input again', () => {
    const q = new SocketInputQueue(4096);
    const session = { queueing: true };
    expect(q.admit(1, session, 1000)).toBe(true);
    expect(q.bytes).toBe(1000 + QUEUED_FRAME_OVERHEAD);
    session.queueing = false;
    expect(q.admit(1, session, 1000)).toBe(true);
    expect(q.bytes).toBe(0);
  });
});
