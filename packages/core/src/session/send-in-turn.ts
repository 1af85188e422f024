/**
 * Messages of a state sent in pieces (SessionReplica.stateUpdates) that are not yet written out
 * at once: each next piece is encoded and sent when an earlier one was written. Sending a
 * 10 MB state's 40 pieces in one go copied all of them (into messages, into frames) in one
 * task of the relay's event loop, ~20 ms during which no other document was served; two
 * ahead keep the socket busy without that.
 */
export const STATE_PIECES_AHEAD = 2;

/**
 * Sends `pieces` in order through `send`, at most `ahead` of them sent and not yet written
 * out: the others from the written-out callbacks (`onWritten`, which `send` passes to the
 * channel; none for the last piece, whose send has its own). `send` returns false when nothing
 * was sent (the session closed): the rest is then dropped. Returns what the first send returned.
 */
export function sendInTurn(
  pieces: readonly Uint8Array[],
  ahead: number,
  send: (piece: Uint8Array, last: boolean, onWritten: (() => void) | undefined) => boolean,
): boolean {
  let next = 0;
  let stopped = false;
  const sendNext = (): boolean => {
    if (stopped || next >= pieces.length) return false;
    const i = next++;
    const last = i === pieces.length - 1;
    const sent = send(pieces[i]!, last, last ? undefined : () => void sendNext());
    if (!sent) stopped = true;
    return sent;
  };
  const first = sendNext();
  // A channel may call back at once (inside `send`), which already sent the next ones.
  while (!stopped && next < Math.min(ahead, pieces.length)) sendNext();
  return first;
}
