/**
 * The messages one channel (a link to a peer relay, either direction) sent that carry
 * document content, with the document's position when each was sent, so the peer's ack
 * (which counts those messages) can be turned into a position.
 */
export class SentLog {
  private sent: { seq: number; docSeq: number }[] = [];
  private head = 0;
  private count = 0;

  /** A document-carrying message went out while the document was at `docSeq`; returns its number. */
  record(docSeq: number): number {
    this.sent.push({ seq: ++this.count, docSeq });
    return this.count;
  }

  /**
   * The peer acknowledged messages 1..`seq`: the document position they cover (the highest
   * any of them was recorded at: a piece of a state answer records 0), or 0.
   */
  acked(seq: number): number {
    let docSeq = 0;
    while (this.head < this.sent.length && this.sent[this.head]!.seq <= seq) docSeq = Math.max(docSeq, this.sent[this.head++]!.docSeq);
    if (this.head > 1024 && this.head * 2 > this.sent.length) {
      this.sent = this.sent.slice(this.head);
      this.head = 0;
    }
    return docSeq;
  }
}
