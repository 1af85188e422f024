/** The thresholds the results are judged by (the targets come from the issue). */

/** A level is sustained when its p99 is at most this and nearly everything arrived. */
export const SUSTAINED_P99_MS = 20;
export const SUSTAINED_DELIVERED_PCT = 99;

export const TARGETS = {
  /** capsync p99 at this load no worse than the reference's. */
  p99CompareAt: 1500,
  /** Highest sustained load at least this multiple of the reference's... */
  sustainedVsReference: 1.3,
  /** ...and of raw ws broadcast's. */
  sustainedVsRaw: 0.8,
  /** Server RSS per idle connection, KB. */
  idleKiB: 15,
};

/** Other processes above this share of one core make a level suspect (it is run again). */
export const INTERFERENCE_CPU_PCT = 20;
