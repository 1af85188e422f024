/**
 * Linearizability checking for test histories: record with `HistoryRecorder`, check with
 * `checkLinearizable` against a `Model` (the lock + fenced register one is `lockModel`), or
 * let `assertLinearizable` do both the check and, on failure, the dump of the history.
 */
import { checkLinearizable, type CheckOptions, type CheckResult, type Model } from './checker.js';
import { saveHistory, type Operation } from './history.js';

export { checkLinearizable, type CheckOptions, type CheckResult, type Model } from './checker.js';
export {
  HistoryRecorder,
  historyFromJSON,
  historyToJSON,
  loadHistory,
  makeHistory,
  saveHistory,
  type Operation,
  type OperationSpec,
  type Outcome,
  type PendingOperation,
  type ProcessId,
} from './history.js';
export {
  canonicalJson,
  describeLockOp,
  lockModel,
  type Done,
  type Granted,
  type LockInput,
  type LockModelOptions,
  type LockOperation,
  type LockOutput,
  type LockState,
  type ReadResult,
  type Refused,
} from './lock-model.js';

/**
 * Throws unless `ops` is linearizable. On a violation (or, unless `allowTimeout`, a timeout:
 * an unchecked history proves nothing) the history is written to a file (see `saveHistory`)
 * and the error message names it, with the checker's reason.
 */
export function assertLinearizable<S, I, O>(
  model: Model<S, I, O>,
  ops: readonly Operation<I, O>[],
  options: CheckOptions & { label: string; allowTimeout?: boolean },
): CheckResult<I, O> {
  const result = checkLinearizable(model, ops, options);
  if (result.ok === true || (result.ok === 'timeout' && options.allowTimeout)) return result;
  const file = saveHistory(ops as readonly Operation[], options.label);
  const why = result.ok === 'timeout' ? `the check timed out after ${options.timeoutMs} ms` : result.reason;
  throw new Error(`${options.label}: history of ${ops.length} operations is not proven linearizable: ${why}\nHistory: ${file}`);
}
