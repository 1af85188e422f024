import type { Response } from 'express';
import { CapsyncError, type ErrorCode } from '@capsync/core';

const statusByCode: Partial<Record<ErrorCode, number>> = {
  'bad-message': 400,
  'invalid-update': 400,
  'invalid-doc-name': 400,
  unauthorized: 401,
  forbidden: 403,
  'read-only': 403,
  'fenced-area': 409,
  'stale-token': 409,
  conflict: 409,
  'lease-lost': 409,
  'lock-timeout': 409,
  'invalid-lock-request': 400,
  'message-too-large': 413,
  'storage-failure': 503,
  unavailable: 503,
  'shutting-down': 503,
  'not-owner': 403,
  'origin-not-allowed': 403,
  'limit-exceeded': 429,
  'missing-dependencies': 422,
  'too-deep': 422,
  'too-many-connections': 503,
  'not-found': 404,
  'document-deleted': 410,
};

/** Sends `{ error: { code, message } }` with the HTTP status matching the error code. */
export function sendError(res: Response, err: unknown): void {
  const e = err instanceof CapsyncError ? err : new CapsyncError('internal', 'internal error');
  res.status(statusByCode[e.code] ?? 500).json({ error: { code: e.code, message: e.message } });
}
