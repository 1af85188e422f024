/**
 * The receiving side of chunk flow control (MUX_FLOW_CAPABILITY, FairSocket.enableFlow): adds
 * up the chunk bytes taken off the socket in one task and credits them in one `chunk-credit`
 * at its end (so a large message taken in one read costs one credit, not one per chunk). Off
 * until `enabled` is set: a side whose peer did not say it takes credits never sends one (an
 * older peer would refuse the message).
 */
export class ChunkCredits {
  enabled = false;
  private pending = 0;
  private scheduled = false;

  constructor(
    /** Sends one `chunk-credit` of `bytes` on the control session. */
    private readonly send: (bytes: number) => void,
  ) {}

  /** `bytes` of chunks were taken (MuxHandler.chunkTaken). */
  taken(bytes: number): void {
    if (!this.enabled || bytes === 0) return;
    this.pending += bytes;
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      const bytes = this.pending;
      this.pending = 0;
      if (bytes > 0) this.send(bytes);
    });
  }
}
