/**
 * A document's connections, telling the document when one leaves (`onLeave`, once per
 * connection that was in the set), so what the document holds for a connection is let go with
 * it, wherever the connection removes itself from.
 */
export class PeerSet<P> extends Set<P> {
  constructor(private readonly onLeave: (peer: P) => void) {
    super();
  }

  override delete(peer: P): boolean {
    if (!super.delete(peer)) return false;
    this.onLeave(peer);
    return true;
  }
}
