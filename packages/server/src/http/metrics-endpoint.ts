import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type RequestHandler } from 'express';
import { AuthError } from '@capsync/core';
import type { Relay } from '../relay/relay.js';
import { sendError } from './http-errors.js';

/**
 * `GET /metrics` (Prometheus text). With `--metrics-token` it needs `Authorization: Bearer
 * <token>`, compared in constant time (401 otherwise): metrics name documents' traffic, peers and
 * refusals, which is no business of anyone who can merely reach the port.
 */
export function metricsHandler(relay: Relay): RequestHandler {
  const expected = relay.options.metricsToken === undefined ? undefined : digest(relay.options.metricsToken);
  return async (req, res) => {
    if (expected && !bearerMatches(req.headers.authorization, expected)) {
      relay.metrics.refusals.inc({ reason: 'unauthorized' });
      res.set('WWW-Authenticate', 'Bearer realm="capsync-metrics"');
      sendError(res, new AuthError('unauthorized', '/metrics needs the metrics token (Authorization: Bearer ...)'));
      return;
    }
    relay.mesh.refreshLagMetrics();
    res.set('Content-Type', relay.metrics.registry.contentType);
    res.send(await relay.metrics.registry.metrics());
  };
}

/** A running metrics-only server (`--metrics-port`). */
export interface MetricsServer {
  /** e.g. http://127.0.0.1:9464/metrics */
  url: string;
  close(): Promise<void>;
}

/**
 * Serves only `/metrics`, on 127.0.0.1:`port` (0 = any free port): scrapers on the machine (or
 * through a tunnel/sidecar) reach it, the network does not.
 */
export async function startMetricsServer(relay: Relay, port: number): Promise<MetricsServer> {
  const app = express();
  app.disable('x-powered-by');
  app.get('/metrics', metricsHandler(relay));
  const server = http.createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${bound}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Hashing both sides first gives equal lengths, so the comparison leaks nothing, not even the length. */
function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function bearerMatches(header: string | undefined, expected: Buffer): boolean {
  const m = header ? /^bearer\s+(\S+)\s*$/i.exec(header) : null;
  return m !== null && timingSafeEqual(digest(m[1]!), expected);
}
