/**
 * The shape every conformance suite of capsync shares (DocStore, FenceStore here; LockBackend
 * and LockStore in `@capsync/server/conformance`; ReplicaStore in `@capsync/client/conformance`).
 *
 * A suite is a list of named cases. Each case is a plain async function that throws a plain
 * `Error` on failure, so suites run under any test runner and core keeps no test-framework
 * dependency. An implementation supplies a harness (what the suite needs from it: how to make
 * one, and optional powers such as reopening one); it runs every case:
 *
 *   for (const c of suite) {
 *     const skip = conformanceSkipReason(c, harness)
 *     skip ? it.skip(`${c.name} (${skip})`) : it(c.name, () => c.run(harness))
 *   }
 *
 * A case that needs an optional power the harness lacks is reported as skipped with the
 * harness's reason; it never passes without checking (and `run` called anyway throws).
 */

/** What every harness may carry besides its suite's members. */
export interface HarnessBase {
  /**
   * Why an optional member is absent (e.g. `{ reopen: 'memory keeps nothing across a restart' }`),
   * shown next to the cases skipped for it.
   */
  readonly absent?: Readonly<Record<string, string>>;
}

/** One named, runner-agnostic case of a suite for harness `H`. */
export interface ConformanceCase<H> {
  readonly name: string;
  /** Optional members of `H` the case cannot run without: it is skipped, never passed, when one is missing. */
  readonly needs?: readonly (keyof H & string)[];
  /** Longer than the runner's default, for cases that wait on real timers (lease expiry). */
  readonly timeoutMs?: number;
  run(harness: H): Promise<void>;
}

/** Null when the harness can run `c`; else why not (for the runner's skip report). */
export function conformanceSkipReason<H extends HarnessBase>(c: ConformanceCase<H>, harness: H): string | null {
  const missing = (c.needs ?? []).filter((k) => harness[k] === undefined);
  if (missing.length === 0) return null;
  return missing.map((k) => `no ${k}: ${harness.absent?.[k] ?? 'the harness does not provide it'}`).join('; ');
}

/** A member a case needs; throws (so the case fails loudly) if the harness lacks it. */
export function required<H, K extends keyof H>(harness: H, key: K): NonNullable<H[K]> {
  const value = harness[key];
  if (value === undefined || value === null) throw new Error(`conformance: this case needs harness.${String(key)}, which is missing`);
  return value as NonNullable<H[K]>;
}

/** A failed check of suite `suite` (its name prefixes the message). */
export function conformanceFail(suite: string, message: string): never {
  throw new Error(`${suite} conformance: ${message}`);
}

/**
 * How `p` settles: 'ok', or the `code` of the error it rejects with (a CapsyncError), or the
 * error's name for any other error. The error comes back too, for checks of its message.
 */
export async function conformanceOutcome(p: Promise<unknown>): Promise<{ code: string; err?: Error }> {
  try {
    await p;
    return { code: 'ok' };
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code;
    return { code: typeof code === 'string' ? code : `${(err as Error)?.name ?? 'error'} (no code)`, err: err as Error };
  }
}

/** The checks a suite uses, bound to its name so failures say which contract broke. */
export function conformanceChecks(suite: string) {
  const fail = (message: string): never => conformanceFail(suite, message);
  return {
    fail,
    ok(condition: unknown, what: string): void {
      if (!condition) fail(what);
    },
    equal<T>(actual: T, expected: T, what: string): void {
      if (actual !== expected) fail(`${what}: expected ${String(expected)}, got ${String(actual)}`);
    },
    bytesEqual(a: Uint8Array, b: Uint8Array, what: string): void {
      if (a.byteLength !== b.byteLength || a.some((v, i) => v !== b[i])) fail(`${what}: bytes differ`);
    },
    /** Rejects unless `p` rejects with error code `code`; returns the error. */
    async rejectsWith(p: Promise<unknown>, code: string, what: string): Promise<Error> {
      const r = await conformanceOutcome(p);
      if (r.code !== code) fail(`${what}: expected ${code}, got ${r.code}${r.err ? ` (${r.err.message})` : ''}`);
      return r.err!;
    },
  };
}
