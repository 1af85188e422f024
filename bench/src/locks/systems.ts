/** What a workload drives: something that takes and gives back a lock, one key at a time. */

/** Releases what `acquire` took. */
export type Release = () => Promise<void>;

export interface LockSystem {
  readonly id: SystemId;
  /** Takes the lock on `key` (it is free); rejects on any refusal. */
  acquire(key: string): Promise<Release>;
  /** CPU time so far of the processes serving this system, microseconds (NaN when none/unknown). */
  relayCpuMicros(): number;
  close(): Promise<void>;
}

export const SYSTEM_IDS = ['embedded', 'etcd', 'raw-etcd', 'raw-etcd-textbook'] as const;
export type SystemId = (typeof SYSTEM_IDS)[number];

export const SYSTEM_LABELS: Record<SystemId, string> = {
  embedded: 'capsync, embedded backend',
  etcd: 'capsync, etcd backend',
  'raw-etcd': 'raw etcd3, same round trips',
  'raw-etcd-textbook': 'raw etcd3, textbook lock',
};

/** Systems that need the etcd cluster. */
export const ETCD_SYSTEMS: readonly SystemId[] = ['etcd', 'raw-etcd', 'raw-etcd-textbook'];
