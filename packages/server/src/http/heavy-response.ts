import type { Request, Response } from 'express';
import type { UnsentBudget } from '../relay/unsent-budget.js';

/**
 * Document GETs (the JSON view, the state as one update) answer with the whole document: a
 * client that asks many times and never reads would park a document-sized response per request
 * in the relay's memory. So they go under the same unsent-bytes budget as every connection:
 *
 * - `refuseHeavyResponse` before the (costly) encoding: while the client's address or the relay
 *   is over its budget, the request is refused (throws 429 `limit-exceeded`);
 * - `sendUnderBudget` counts the response's unwritten bytes (what sits in the socket's buffer
 *   once it is sent) until it was written out or the connection closed; a client that does not
 *   read it while the budget is exceeded is cut like a slow connection (its socket destroyed).
 *
 * The count is taken once when the response is sent and dropped when it is written out (Node
 * frees a write's buffer only once all of it was written): no per-chunk work.
 */
export function refuseHeavyResponse(budget: UnsentBudget, req: Request): void {
  const refusal = budget.refusal(req.socket.remoteAddress ?? '');
  if (refusal) throw refusal;
}

/** Sends the response with `send` and counts it against the budget until it is written out. */
export function sendUnderBudget(budget: UnsentBudget, req: Request, res: Response, send: () => void): void {
  const socket = req.socket;
  send();
  if (socket.destroyed || res.writableFinished || socket.writableLength === 0) return;
  const account = budget.open(socket.remoteAddress ?? '', { evict: () => socket.destroy() });
  const done = (): void => budget.close(account);
  res.once('finish', done);
  res.once('close', done);
  budget.update(account, socket.writableLength);
}
