import { describe, expect, it } from 'vitest';
import { RelayMetrics } from '../src/metrics.js';

describe('per-message counters keep plain tallies until read', () => {
  it('reads (get and scrape) see every increment, labelled and not, and later ones add up', async () => {
    const metrics = new RelayMetrics();
    metrics.messagesOut.inc({ type: 'update' });
    metrics.messagesOut.inc({ type: 'update' }, 2);
    metrics.messagesOut.inc({ type: 'ack' });
    metrics.bytesOut.inc(100);
    metrics.bytesOut.inc(20);
    const values = async () => Object.fromEntries((await metrics.messagesOut.get()).values.map((v) => [v.labels.type, v.value]));
    expect(await values()).toEqual({ update: 3, ack: 1 });
    expect((await metrics.bytesOut.get()).values[0]!.value).toBe(120);
    metrics.messagesOut.inc({ type: 'ack' }, 4);
    metrics.bytesOut.inc(1);
    const text = await metrics.registry.metrics();
    expect(text).toContain('capsync_messages_out_total{type="ack"} 5');
    expect(text).toContain('capsync_messages_out_total{type="update"} 3');
    expect(text).toContain('capsync_bytes_out_total 121');
    expect(await values()).toEqual({ update: 3, ack: 5 });
  });
});
