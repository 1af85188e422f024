/**
 * The order promise of durable acks on one link: an ack names a message position and promises
 * that every message up to it is committed, so acks must go out in message order even when a
 * later update commits first (one that waited for missing dependencies commits late).
 *
 * - `update(durable)`: a received update whose commit is `durable`; the returned promise
 *   resolves once it AND every earlier message of the link are durable.
 * - `barrier(settled)`: a received empty update (a barrier: "is everything durable?"); resolves
 *   once every earlier message is durable and `settled` (every pending write of the document,
 *   including changes that came from other links) resolved.
 *
 * A rejection (a failed commit) propagates to every later position: nothing after a lost
 * write may be acknowledged. Make a new AckOrder per connection: a new connection's acks
 * count its own messages.
 */
export class AckOrder {
  private last: Promise<unknown> = Promise.resolve();

  update(durable: Promise<void>): Promise<void> {
    const inOrder = this.last.then(() => durable);
    this.last = inOrder;
    return inOrder;
  }

  barrier(settled: Promise<void>): Promise<void> {
    const inOrder = Promise.all([this.last, settled]).then(() => undefined);
    this.last = inOrder;
    return inOrder;
  }
}
