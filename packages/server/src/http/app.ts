import express, { type NextFunction, type Request, type Response } from 'express';
import * as Y from 'yjs';
import { AuthError, CapsyncError, LimitExceededError, docToJSON, encodeStateVectorOf, validateDocName, type ErrorCode } from '@capsync/core';
import type { AccessGrant } from '../auth/access.js';
import { tokenFromRequest } from '../auth/token-from-request.js';
import { MESH_PATH } from '../mesh/mesh-connection.js';
import type { Relay } from '../relay/relay.js';
import type { RelayDoc } from '../relay/relay-doc.js';
import { refuseHeavyResponse, sendUnderBudget } from './heavy-response.js';
import { sendError } from './http-errors.js';
import { HttpSources } from './http-sources.js';
import { parseJsonEdits, PatchWriters, updateOfJsonEdits } from './json-edits.js';
import { metricsHandler } from './metrics-endpoint.js';
import { originMiddleware, type OriginPolicy } from './origin-policy.js';

/**
 * The relay's HTTP API: health, readiness, metrics, and a small document API
 * (JSON view, state as a binary update, apply a binary update) under the same auth as
 * WebSocket connections. Browsers' requests pass `origins` first (403 or CORS headers).
 */
export function createHttpApp(relay: Relay, origins: OriginPolicy): express.Express {
  const app = express();
  app.disable('x-powered-by');
  const sources = new HttpSources();
  const patchWriters = new PatchWriters();
  app.use(originMiddleware(origins, relay.metrics));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', relayId: relay.options.relayId });
  });

  app.get('/readyz', async (_req, res) => {
    if (relay.isClosing) {
      res.status(503).json({ status: 'shutting-down' });
      return;
    }
    if (relay.storageOutage.unavailable) {
      res.status(503).json({ status: 'storage-unavailable', message: 'appends are waiting for storage to be reachable again' });
      return;
    }
    try {
      await relay.store.ping();
      res.json({ status: 'ready' });
    } catch (err) {
      res.status(503).json({ status: 'storage-unavailable', message: (err as Error).message });
    }
  });

  // With --metrics-port, metrics are served there only (loopback), not on the public port.
  if (relay.options.metricsPort === undefined) app.get('/metrics', metricsHandler(relay));

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
      refuseHeavyResponse(relay.unsent, req);
      // Depth-capped: a writer decides how deep a document nests (422 too-deep past the cap).
      const json = docToJSON(doc.doc, { maxDepth: relay.options.maxJsonDepth });
      sendUnderBudget(relay.unsent, req, res, () => res.json(json));
    }),
  );

  app.get('/v1/docs/:name/update', (req, res) =>
    withDoc(relay, req, res, 'read', (doc) => {
      refuseHeavyResponse(relay.unsent, req);
      const state = Buffer.from(doc.encodeState());
      sendUnderBudget(relay.unsent, req, res, () => res.type('application/octet-stream').send(state));
    }),
  );

  app.post(
    '/v1/docs/:name/update',
    admitBody(relay, 'write'),
    express.raw({ type: () => true, limit: relay.options.maxMessageBytes }),
    (req, res) =>
      withDoc(relay, req, res, 'write', async (doc, grant) => {
        const body: unknown = req.body;
        if (!(body instanceof Uint8Array) || body.byteLength === 0) {
          throw new CapsyncError('invalid-update', 'body must be a binary Yjs update');
        }
        // Same admission as a WebSocket update: client id caps, ownership by the token's `sub`;
        // without one, budgets per client address (HttpSources).
        const { durable, clients } = doc.receive(body, { kind: 'http', source: sources.of(req.socket.remoteAddress), subject: grant.subject });
        await durable;
        // What changed (the entries of the client ids it wrote), as in a WebSocket ack: bounded by the update.
        res.json({ durable: true, stateVector: Buffer.from(encodeStateVectorOf(doc.doc, clients)).toString('base64') });
      }),
  );

  app.patch(
    '/v1/docs/:name',
    admitBody(relay, 'write'),
    express.json({ type: () => true, limit: relay.options.maxMessageBytes }),
    (req, res) =>
      withDoc(relay, req, res, 'write', async (doc, grant) => {
        const edits = parseJsonEdits(req.body, relay.options.maxJsonDepth);
        // Built on a copy of the document's state under the writer's one client id here, then
        // admitted as any client's update (synchronously: no other PATCH comes between).
        const writer = grant.subject !== undefined ? `sub:${grant.subject}` : `addr:${req.socket.remoteAddress ?? ''}`;
        let update;
        try {
          update = updateOfJsonEdits(doc.encodeState(), edits, patchWriters.clientIdFor(doc.name, writer), relay.options.maxPatchDocBytes);
        } catch (err) {
          if (err instanceof LimitExceededError) relay.metrics.limitRefusals.inc({ limit: err.limit });
          throw err;
        }
        if (!update) {
          res.json({ durable: true, changed: false });
          return;
        }
        let applied;
        try {
          applied = doc.receive(update, { kind: 'http', source: sources.of(req.socket.remoteAddress), subject: grant.subject });
        } catch (err) {
          patchWriters.forget(doc.name, writer);
          throw err;
        }
        const { durable, clients } = applied;
        // Not committed: its content may live on in replicas that got it; the next PATCH must not
        // write other content at the same id and clock.
        await durable.catch((err: unknown) => {
          patchWriters.forget(doc.name, writer);
          throw err;
        });
        res.json({ durable: true, changed: true, stateVector: Buffer.from(encodeStateVectorOf(doc.doc, clients)).toString('base64') });
      }),
  );

  // Deletes the document and its log; its sessions close with 'document-deleted' (4410), and a
  // replica of it that synced before cannot bring it back (see deleteDocument). 404 if unknown.
  app.delete('/v1/docs/:name', async (req, res) => {
    try {
      const { name, grant } = await authorizeDoc(relay, req, 'write');
      const { incarnation } = await relay.deleteDocument(name, grant.subject);
      res.json({ deleted: true, incarnation });
    } catch (err) {
      const code: ErrorCode = err instanceof CapsyncError ? err.code : 'internal';
      relay.metrics.refusals.inc({ reason: code });
      if (code === 'internal' || code === 'storage-failure') relay.logger.error({ err }, 'deleting a document failed');
      sendError(res, err);
    }
  });

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

/** The request's document name and grant, or throws (invalid name, unauthorized, forbidden, read-only). */
async function authorizeDoc(relay: Relay, req: Request, need: 'read' | 'write'): Promise<{ name: string; grant: AccessGrant }> {
  const name = validateDocName(String(req.params['name']));
  const grant = await relay.access.authorize(tokenFromRequest(req), name);
  if (need === 'write' && grant.permission !== 'write') throw new AuthError('read-only', `read-only access to "${name}"`);
  return { name, grant };
}

const ADMITTED = 'capsyncAdmitted';

/**
 * Runs before a body parser: the declared size and the request's authorization are checked
 * before a byte of the body is read, so nobody without access can make the relay buffer a body
 * (a body without Content-Length is still cut at the limit by the parser). A refused body is
 * dropped as it arrives, within bounds, so that the client can read the refusal.
 */
function admitBody(relay: Relay, need: 'read' | 'write') {
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    try {
      const declared = Number(req.headers['content-length']);
      if (declared > relay.options.maxMessageBytes) {
        throw new CapsyncError('message-too-large', `body of ${declared} bytes, over the limit of ${relay.options.maxMessageBytes}`);
      }
      res.locals[ADMITTED] = await authorizeDoc(relay, req, need);
      next();
    } catch (err) {
      const code: ErrorCode = err instanceof CapsyncError ? err.code : 'internal';
      relay.metrics.refusals.inc({ reason: code });
      if (code === 'internal') relay.logger.error({ err }, 'admitting an HTTP request failed');
      refuseAfterBody(req, res, err, relay.options.maxMessageBytes);
    }
  };
}

/** How long a refused request's body may take to arrive before the refusal is sent anyway. */
const REFUSED_BODY_WAIT_MS = 2_000;

/**
 * Answers `err` once the refused request's body has arrived — read and dropped, never buffered —
 * or at once when it is over `maxBytes` or slower than `REFUSED_BODY_WAIT_MS`; then the
 * connection is closed. Answering and closing while the client is still sending makes the kernel
 * answer its further data with a reset, which can discard the refusal before the client reads it
 * (seen under load: refused uploads ended as network errors instead of a 401). Past the bounds
 * that can still happen: the relay does not read a refused body forever.
 */
function refuseAfterBody(req: Request, res: Response, err: unknown, maxBytes: number): void {
  let dropped = 0;
  let answered = false;
  const answer = (): void => {
    if (answered) return;
    answered = true;
    clearTimeout(timer);
    res.set('Connection', 'close');
    sendError(res, err);
  };
  const timer = setTimeout(answer, REFUSED_BODY_WAIT_MS);
  // Complete already, or declared past the bound: nothing worth waiting for.
  if (req.complete || Number(req.headers['content-length']) > maxBytes) return answer();
  req.on('data', (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > maxBytes) answer();
  });
  req.once('end', answer);
  req.once('close', () => clearTimeout(timer));
}

/** Authorizes (unless `admitBody` did), loads the document for the request's duration, and maps errors to JSON. */
async function withDoc(
  relay: Relay,
  req: Request,
  res: Response,
  need: 'read' | 'write',
  fn: (doc: RelayDoc, grant: AccessGrant) => void | Promise<void>,
): Promise<void> {
  try {
    const admitted = res.locals[ADMITTED] as { name: string; grant: AccessGrant } | undefined;
    const { name, grant } = admitted ?? (await authorizeDoc(relay, req, need));
    const doc = await relay.registry.acquire(name).catch((err: unknown) => {
      throw new CapsyncError('storage-failure', 'document could not be loaded', { cause: err });
    });
    try {
      await fn(doc, grant);
    } finally {
      relay.registry.release(name, doc);
    }
  } catch (err) {
    const code: ErrorCode = err instanceof CapsyncError ? err.code : 'internal';
    relay.metrics.refusals.inc({ reason: code });
    if (code === 'internal' || code === 'storage-failure') relay.logger.error({ err }, 'HTTP document request failed');
    sendError(res, err);
  }
}
