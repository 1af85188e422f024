/**
 * When to merge a document's update log into its snapshot. Compacting keeps stored size and
 * load time bounded through long editing sessions; too often wastes CPU re-encoding.
 */
export interface CompactionPolicy {
  /** Compact once the log holds this many updates. */
  maxUpdates: number;
  /** Compact once the log holds this many bytes. */
  maxBytes: number;
}

export const DEFAULT_COMPACTION_POLICY: CompactionPolicy = { maxUpdates: 500, maxBytes: 1024 * 1024 };

/** True when a log of `logCount` entries and `logBytes` bytes is past either threshold. */
export function shouldCompact(log: { logCount: number; logBytes: number }, policy: CompactionPolicy): boolean {
  return log.logCount >= policy.maxUpdates || log.logBytes >= policy.maxBytes;
}
