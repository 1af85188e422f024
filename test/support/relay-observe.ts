import type { RelayProcess } from './relay-process.js';
import { waitForEvent } from './wait.js';

/**
 * Observing a relay process from outside, for the adversarial suite: its Prometheus metrics
 * and its JSON log lines.
 */

/** The sum of metric `name`'s samples whose labels include all of `labels` (0 when none). */
export async function metricValue(httpUrl: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const res = await fetch(`${httpUrl}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  const text = await res.text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const labelText = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

/**
 * Resolves once metric `name{labels}` reaches `atLeast`, asking /metrics again after each
 * answer (each request is the event that paces it); rejects after `timeoutMs`.
 */
export function waitForMetric(httpUrl: string, name: string, labels: Record<string, string>, atLeast: number, timeoutMs = 10_000): Promise<number> {
  return waitForMetricTo(httpUrl, name, labels, (v) => v >= atLeast, `>= ${atLeast}`, timeoutMs);
}

/** As waitForMetric, until `accept` takes the value (`what` says which values, for the timeout message). */
export async function waitForMetricTo(httpUrl: string, name: string, labels: Record<string, string>, accept: (value: number) => boolean, what: string, timeoutMs = 10_000): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await metricValue(httpUrl, name, labels);
    if (accept(value)) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${name} ${JSON.stringify(labels)} ${what} (is ${value})`);
  }
}

/** Resolves with the first log line (parsed) `match` accepts, waiting on the relay's stdout. */
export function waitForLog(relay: RelayProcess, match: (entry: Record<string, unknown>) => boolean, what: string, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  // spawnRelay's line reader is registered first, so `logs` holds a line when its data event fires here.
  return waitForEvent(relay.child.stdout!, 'data', () => relay.logs.find(match), what, timeoutMs);
}
