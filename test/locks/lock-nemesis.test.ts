/**
 * The CP side under a seeded nemesis (see support/lock-chaos.ts), checked for
 * linearizability against the lock + fenced register model: the fenced resources never
 * accept two holders' writes out of token order, granted tokens strictly increase, and every
 * operation that met a partition ended as `unavailable` within its deadline or succeeded
 * correctly. A deliberately unfenced control run must be caught by the same checker.
 *
 *   LOCK_CHAOS_SEEDS=1000 LOCK_CHAOS_OPS=200 npx vitest run locks/lock-nemesis.test.ts
 */
import { describe, expect, it } from 'vitest';
import { assertLinearizable, checkLinearizable, lockModel } from '../support/linearizability/index.js';
import { runLockChaos, type ChaosOptions } from '../support/lock-chaos.js';
import { testSeed } from '../support/seeded-random.js';

const SEEDS = Number(process.env['LOCK_CHAOS_SEEDS'] ?? 2);
const OPS = Number(process.env['LOCK_CHAOS_OPS'] ?? 40);

const base: Omit<ChaosOptions, 'seed'> = {
  opsPerWorker: OPS,
  workers: 3,
  keys: 2,
  ttlMs: 250,
  lockTimeoutMs: 300,
  nemesis: true,
  stallChance: 0.15,
  log: (line) => console.log(line),
};

describe('locks under a nemesis', () => {
  const first = testSeed('lock-nemesis');
  for (let i = 0; i < SEEDS; i++) {
    const seed = first + i;
    it(`seed ${seed}: linearizable, tokens increase, unavailable within deadlines`, async () => {
      const result = await runLockChaos({ ...base, seed });
      console.log(`seed ${seed} nemesis: ${result.nemesisEvents.join('; ')}`);
      expect(result.grants).toBeGreaterThan(0);
      assertLinearizable(lockModel({ fence: 'resource' }), result.userHistory, { label: `lock-nemesis-user-${seed}`, timeoutMs: 30_000 });
      assertLinearizable(lockModel({ fence: 'relay' }), result.cpHistory, { label: `lock-nemesis-cp-${seed}`, timeoutMs: 30_000 });
      expect(result.slowUnavailable.map((op) => `${op.input.f} ${op.tookMs.toFixed(0)} ms`)).toEqual([]);
    }, 120_000);
  }

  it('control: the same run against an unfenced resource is caught by the checker', async () => {
    // Half the holders stall past their TTL before writing while the others wait for the key
    // and write at once: old holders write after newer ones.
    const seed = first + SEEDS;
    const result = await runLockChaos({ ...base, seed, opsPerWorker: 12, keys: 1, nemesis: false, stallChance: 0.5, waitChoices: [1_000], unfenced: true });
    const verdict = checkLinearizable(lockModel({ fence: 'resource' }), result.userHistory, { timeoutMs: 30_000 });
    expect(verdict.ok).toBe(false);
    // The relay's own fence held in the same run.
    assertLinearizable(lockModel({ fence: 'relay' }), result.cpHistory, { label: `lock-control-cp-${seed}`, timeoutMs: 30_000 });
  }, 120_000);
});
