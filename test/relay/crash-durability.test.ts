import { afterAll, describe, expect, it } from 'vitest';
import { ProtocolClient } from '../support/protocol-client.js';
import { tempDir } from '../support/relay-fixture.js';
import { killRelay, spawnRelay, type RelayProcess } from '../support/relay-process.js';
import { SeededRandom, testSeed } from '../support/seeded-random.js';

const ROUNDS = Number(process.env['CRASH_ROUNDS'] ?? 4);
const WRITERS = 3;

/** Updates a writer may have unacknowledged: enough to keep many in flight at the kill. */
const WINDOW = 200;

/**
 * A writer that types numbered markers as fast as the relay takes them and remembers which
 * ones the relay acknowledged. It keeps at most WINDOW unacknowledged, as a real client's flow
 * control would: flooding without one made the relay close a writer as a slow consumer when
 * this process fell behind reading broadcasts on a loaded machine, and the test then waited for
 * acks that could no longer come.
 */
class Writer {
  private seqToMarker = new Map<number, string>();
  private stopped = false;
  constructor(
    readonly client: ProtocolClient,
    readonly id: string,
  ) {}

  start(): void {
    let n = 0;
    const tick = () => {
      if (this.stopped || this.client.closeInfo) return;
      if (this.client.seq - this.client.ackedSeq >= WINDOW) {
        this.client.once('change', tick);
        return;
      }
      for (let i = 0; i < 5; i++) {
        const marker = `<${this.id}:${n++}>`;
        this.seqToMarker.set(this.client.type(marker), marker);
      }
      setImmediate(tick);
    };
    tick();
  }

  stop(): void {
    this.stopped = true;
  }

  /** Markers whose updates the relay acknowledged as durable. */
  acked(): string[] {
    return [...this.seqToMarker].filter(([seq]) => seq <= this.client.ackedSeq).map(([, m]) => m);
  }
}

function markersIn(text: string): Set<string> {
  return new Set(text.match(/<[^>]+>/g) ?? []);
}

describe('a relay killed with SIGKILL loses no acknowledged update', () => {
  const data = tempDir('capsync-crash-');
  afterAll(() => data.remove());

  it(`survives ${ROUNDS} kills at random moments`, async () => {
    const rnd = new SeededRandom(testSeed('crash-durability'));
    const mustHave: string[] = [];
    let totalAcked = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const relay: RelayProcess = await spawnRelay(['--data', data.dir, '--compact-updates', String(rnd.int(20, 200))]);
      try {
        // Everything acknowledged before any earlier crash is there, as soon as the doc is served.
        const check = await ProtocolClient.synced(`${relay.url}/crash`);
        const present = markersIn(check.text);
        const lost = mustHave.filter((m) => !present.has(m));
        expect(lost, `acked markers lost before round ${round}`).toEqual([]);
        await check.close();

        const writers = await Promise.all(
          Array.from({ length: WRITERS }, async (_, i) => new Writer(await ProtocolClient.synced(`${relay.url}/crash`), `r${round}w${i}`)),
        );
        writers.forEach((w) => w.start());
        // Kill after a random number of acks (so the kill lands mid-stream, with updates in flight).
        const killAfter = rnd.int(1, 400);
        const first = writers[0]!.client;
        await first.waitFor(() => first.ackedSeq >= killAfter || first.closeInfo || undefined, `${killAfter} acks`, 20_000);
        expect(first.closeInfo, 'the writer was closed before the kill').toBeNull();
        await killRelay(relay, 'SIGKILL');
        writers.forEach((w) => w.stop());
        for (const w of writers) {
          const acked = w.acked();
          totalAcked += acked.length;
          mustHave.push(...acked);
        }
      } finally {
        await killRelay(relay);
      }
    }
    const relay = await spawnRelay(['--data', data.dir]);
    try {
      const check = await ProtocolClient.synced(`${relay.url}/crash`);
      const present = markersIn(check.text);
      expect(mustHave.filter((m) => !present.has(m)), 'acked markers lost after the final restart').toEqual([]);
      await check.close();
    } finally {
      await killRelay(relay, 'SIGTERM');
    }
    console.log(`[crash-durability] ${ROUNDS} SIGKILLs, ${totalAcked} acknowledged updates, 0 lost`);
    expect(totalAcked).toBeGreaterThan(ROUNDS);
  });
});
