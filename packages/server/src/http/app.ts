import express, { type Request, type Response } from 'express';
import * as Y from 'yjs';
import { AuthError, CapsyncError, docToJSON, encodeStateVectorOf, validateDocName, type ErrorCode } from '@capsync/core';
import type { AccessGrant } from '../auth/access.js';
import { tokenFromRequest } from '../auth/token-from-request.js';
import { MESH_PATH } from '../mesh/mesh-connection.js';
import type { Relay } from '../relay/relay.js';
import type { RelayDoc } from '../relay/relay-doc.js';
import { sendError } from './http-errors.js';

const httpSource = { kind: 'http' } as const;

/**
 * The relay's HTTP API: health, readiness, metrics, and a small document API
 * (JSON view, state as a binary update, apply a binary update) under the same auth as
 * WebSocket connections.
 */
export function createHttpApp(relay: Relay): express.Express {
  const app = express();
  app.disable('x-powered-by');

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', relayId: relay.options.relayId });
  });

  app.get('/readyz', async (_req, res) => {
    if (relay.isClosing) {
      res.status(503).json({ status: 'shutting-down' });
      return;
    }
    try {
      await relay.store.ping();
      res.json({ status: 'ready' });
    } catch (err) {
      res.status(503).json({ status: 'storage-unavailable', message: (err as Error).message });
    }
  });

  app.get('/metrics', async (_req, res) => {
    relay.mesh.refreshLagMetrics();
    res.set('Content-Type', relay.metrics.registry.contentType);
    res.send(await relay.metrics.registry.metrics());
  });

  // Every stored document's name: for peer relays sweeping everything (replicate-all).
  app.get('/v1/docs', async (req, res) => {
    try {
      const grant = await relay.access.authorize(tokenFromRequest(req), MESH_PATH);
      if (!grant.relay) throw new AuthError('forbidden', 'listing documents needs a relay credential');
      res.json({ docs: await relay.store.list() });
    } catch (err) {
      const code: ErrorCode = err instanceof CapsyncError ? err.code : 'internal';
      relay.metrics.refusals.inc({ reason: code });
      if (code === 'internal') relay.logger.error({ err }, 'listing documents failed');
      sendError(res, err);
    }
  });

  app.get('/v1/docs/:name', (req, res) =>
    withDoc(relay, req, res, 'read', (doc) => {
      res.json(docToJSON(doc.doc));
    }),
  );

  app.get('/v1/docs/:name/update', (req, res) =>
    withDoc(relay, req, res, 'read', (doc) => {
      res.type('application/octet-stream').send(Buffer.from(doc.encodeState()));
    }),
  );

  app.post(
    '/v1/docs/:name/update',
    express.raw({ type: () => true, limit: relay.options.maxMessageBytes }),
    (req, res) =>
      withDoc(relay, req, res, 'write', async (doc, grant) => {
        const body: unknown = req.body;
        if (!(body instanceof Uint8Array) || body.byteLength === 0) {
          throw new CapsyncError('invalid-update', 'body must be a binary Yjs update');
        }
        // Same admission as a WebSocket update: client id caps, ownership by the token's `sub`.
        const admission = doc.validate(body, { subject: grant.subject });
        const started = performance.now();
        const { durable } = doc.applyRemote(body, httpSource, admission);
        relay.metrics.applySeconds.observe((performance.now() - started) / 1000);
        await durable;
        // What changed (the entries of the client ids it wrote), as in a WebSocket ack: bounded by the update.
        res.json({ durable: true, stateVector: Buffer.from(encodeStateVectorOf(doc.doc, admission.clients)).toString('base64') });
      }),
  );

  if (relay.options.staticDir) app.use(express.static(relay.options.staticDir, { index: 'index.html', fallthrough: true }));

  // Body-parser errors (too large, aborted) and anything else thrown.
  app.use((err: unknown, _req: Request, res: Response, _next: unknown) => {
    const { type, status } = err as { type?: string; status?: number };
    if (type === 'entity.too.large') {
      relay.metrics.refusals.inc({ reason: 'message-too-large' });
      sendError(res, new CapsyncError('message-too-large', `body over ${relay.options.maxMessageBytes} bytes`));
      return;
    }
    if (err instanceof URIError) {
      // The router could not percent-decode the document name.
      relay.metrics.refusals.inc({ reason: 'invalid-doc-name' });
      sendError(res, new CapsyncError('invalid-doc-name', 'invalid document name: malformed percent-escape'));
      return;
    }
    if (status !== undefined && status >= 400 && status < 500) {
      // Other client errors from body parsing (aborted request, bad encoding).
      relay.metrics.refusals.inc({ reason: 'bad-message' });
      sendError(res, new CapsyncError('bad-message', (err as Error).message));
      return;
    }
    relay.logger.error({ err }, 'HTTP request failed');
    sendError(res, err);
  });

  return app;
}

/** Authorizes, loads the document for the request's duration, and maps errors to JSON. */
async function withDoc(
  relay: Relay,
  req: Request,
  res: Response,
  need: 'read' | 'write',
  fn: (doc: RelayDoc, grant: AccessGrant) => void | Promise<void>,
): Promise<void> {
  let name: string;
  try {
    name = validateDocName(String(req.params['name']));
    const grant = await relay.access.authorize(tokenFromRequest(req), name);
    if (need === 'write' && grant.permission !== 'write') throw new AuthError('read-only', `read-only access to "${name}"`);
    const doc = await relay.registry.acquire(name).catch((err: unknown) => {
      throw new CapsyncError('storage-failure', 'document could not be loaded', { cause: err });
    });
    try {
      await fn(doc, grant);
    } finally {
      relay.registry.release(name);
    }
  } catch (err) {
    const code: ErrorCode = err instanceof CapsyncError ? err.code : 'internal';
    relay.metrics.refusals.inc({ reason: code });
    if (code === 'internal' || code === 'storage-failure') relay.logger.error({ err }, 'HTTP document request failed');
    sendError(res, err);
  }
}
