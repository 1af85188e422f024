import { it } from 'vitest';
import { conformanceSkipReason, type ConformanceCase, type HarnessBase } from '@capsync/core/conformance';

/**
 * Runs a conformance suite (`@capsync/core/conformance`, `@capsync/server/conformance`,
 * `@capsync/client/conformance`) as vitest cases, inside the caller's `describe`. A case the
 * harness cannot run is reported as skipped with the reason in its name, never passed.
 */
export function runConformance<H extends HarnessBase>(cases: readonly ConformanceCase<H>[], harness: H): void {
  for (const c of cases) {
    const skip = conformanceSkipReason(c, harness);
    if (skip) it.skip(`${c.name} [skipped: ${skip}]`, () => {});
    else it(c.name, () => c.run(harness), c.timeoutMs);
  }
}
