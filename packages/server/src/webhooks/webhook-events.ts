import { docToJSON } from '@capsync/core';
import type { RelayHooks } from '../hooks/relay-hooks.js';
import type { WebhookDispatcher } from './webhook-dispatcher.js';
import type { ResolvedWebhookOptions } from './webhook-options.js';

/** Documents loaded empty and not yet changed, remembered at most this long and this many (for document.created). */
const NEW_DOC_MEMORY_MS = 10 * 60_000;
const MAX_NEW_DOCS = 100_000;

/**
 * The webhook events, made from the relay's hooks (so they follow the hooks' contract: after the
 * fact, bounded, never in the way of a document). Each hook resolves once its event is queued
 * durably, so `document.changed` of a document is not queued again before the previous one is.
 *
 * - `document.created`: the first change of a document that was loaded with nothing stored
 *   (just before its first `document.changed`). In a cluster or mesh, two relays that both
 *   loaded it empty may both report it.
 * - `document.changed`: as `onChange` (debounced by `changeDebounceMs`, at most `changeMaxWaitMs`
 *   late), with `documentUrl` or `document` (its JSON) as configured.
 * - `document.deleted`, `connection.opened`, `connection.closed`: as the hooks of those names.
 */
export function webhookHooks(dispatcher: WebhookDispatcher, o: ResolvedWebhookOptions, relay: { url(): string; maxJsonDepth: number }): RelayHooks {
  const loadedEmpty = new Map<string, number>();
  const documentUrl = (docName: string) => `${o.documentBaseUrl ?? relay.url()}/v1/docs/${encodeURIComponent(docName)}`;
  return {
    onConnect: (e) => dispatcher.publish('connection.opened', { docName: e.docName, identity: e.identity ?? null, permission: e.permission }),
    onDisconnect: (e) => dispatcher.publish('connection.closed', { docName: e.docName, identity: e.identity ?? null, permission: e.permission, code: e.code ?? null }),
    onLoadDocument: ({ docName }) => {
      if (!dispatcher.wants('document.created')) return;
      const now = Date.now();
      // Oldest first (insertion order): forget what was loaded long ago, or past the bound.
      for (const [name, at] of loadedEmpty) {
        if (now - at < NEW_DOC_MEMORY_MS && loadedEmpty.size < MAX_NEW_DOCS) break;
        loadedEmpty.delete(name);
      }
      loadedEmpty.delete(docName);
      loadedEmpty.set(docName, now);
    },
    onChange: async ({ docName, document }) => {
      if (loadedEmpty.delete(docName)) await dispatcher.publish('document.created', { docName });
      if (!dispatcher.wants('document.changed')) return;
      const data: Record<string, unknown> = { docName };
      if (o.document !== 'none') data['documentUrl'] = documentUrl(docName);
      if (o.document === 'json') {
        const doc = document();
        try {
          const json = JSON.stringify(docToJSON(doc, { maxDepth: relay.maxJsonDepth }));
          if (Buffer.byteLength(json) <= o.maxJsonBytes) data['document'] = JSON.parse(json) as unknown;
          else data['jsonTooLarge'] = true;
        } catch {
          data['jsonTooLarge'] = true; // nested deeper than docToJSON renders
        } finally {
          doc.destroy();
        }
      }
      await dispatcher.publish('document.changed', data);
    },
  };
}
