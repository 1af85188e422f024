import { docToJSON } from '@capsync/core';
import type { RelayHooks } from '../hooks/relay-hooks.js';
import type { HeldEvent, WebhookDispatcher } from './webhook-dispatcher.js';
import type { ResolvedWebhookOptions } from './webhook-options.js';

/** Documents loaded empty and not yet changed, remembered at most this long and this many (for document.created). */
const NEW_DOC_MEMORY_MS = 10 * 60_000;
const MAX_NEW_DOCS = 100_000;
/** Documents with a document.changed held at once, at most. */
const MAX_HELD = 100_000;

/**
 * The webhook events, made from the relay's hooks (so they follow the hooks' contract: after the
 * fact, bounded, never in the way of a document). Each hook resolves once its event is queued
 * durably, so `document.changed` of a document is not queued again before the previous one is.
 *
 * - `document.created`: the first change of a document that was loaded with nothing stored,
 *   queued (durable) at that change, before its first `document.changed` is held: so its
 *   `createdAt` is never later than that document.changed's (deliveries run concurrently;
 *   receivers order by createdAt). In a cluster or mesh, two relays that both loaded it empty
 *   may both report it.
 * - `document.changed`: as `onChange` (debounced by `changeDebounceMs`, at most `changeMaxWaitMs`
 *   late), with `documentUrl` or `document` (its JSON) as configured. Held in the queue from the
 *   first change on, so a crash before onChange delays it (to its due time after the restart,
 *   then with `documentUrl` only) but does not lose it.
 * - `document.deleted`, `connection.opened`, `connection.closed`: as the hooks of those names.
 */
export function webhookHooks(
  dispatcher: WebhookDispatcher,
  o: ResolvedWebhookOptions,
  relay: { url(): string; maxJsonDepth: number; changeDebounceMs: number; changeMaxWaitMs: number; hookTimeoutMs: number },
): RelayHooks {
  const loadedEmpty = new Map<string, number>();
  const documentUrl = (docName: string) => `${o.documentBaseUrl ?? relay.url()}/v1/docs/${encodeURIComponent(docName)}`;
  const urlData = (docName: string): Record<string, unknown> => (o.document === 'none' ? { docName } : { docName, documentUrl: documentUrl(docName) });
  // At a document's first change of a debounce window, a document.changed is queued ahead
  // (durable), due well after its onChange should come: onChange releases it with the latest
  // data; a relay that dies first sends it at its due time after the restart. So no change a
  // client was acknowledged goes unreported.
  // Past a slow onChange of the app (hookTimeoutMs) it may go out as held, then again as released.
  const holdMs = relay.changeMaxWaitMs + relay.changeDebounceMs + 5_000;
  const held = new Map<string, { dueAt: number; event: Promise<HeldEvent | null> }>();
  return {
    onChangePending: ({ docName }) => {
      // Queued first, so the held document.changed below is not created before it (createdAt is
      // taken when an event is queued, before any await).
      const created = loadedEmpty.delete(docName) ? dispatcher.publish('document.created', { docName }) : null;
      if (!dispatcher.wants('document.changed')) return created;
      const now = Date.now();
      const current = held.get(docName);
      if (current && current.dueAt > now) return created; // already held, not yet sent
      if (!current && held.size >= MAX_HELD) {
        // Those past their due time went out as held: forgotten. Past the bound still: reported by onChange only.
        for (const [name, h] of held) if (h.dueAt <= now) held.delete(name);
        if (held.size >= MAX_HELD) return created;
      }
      const dueAt = now + holdMs;
      // Queued in this turn, as the change's own append is (a SQLite store writes in order): so it
      // is durable before the change is acknowledged. Its createdAt is taken now, after created's.
      const event = dispatcher.hold('document.changed', urlData(docName), dueAt);
      held.set(docName, { dueAt, event });
      return created ? Promise.all([created, event]) : event;
    },
    onDocumentDeleted: (e) => dispatcher.publish('document.deleted', { docName: e.docName, identity: e.identity ?? null, incarnation: e.incarnation }),
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
      if (!dispatcher.wants('document.changed')) return;
      const data = urlData(docName);
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
      const h = held.get(docName);
      held.delete(docName);
      const event = h && h.dueAt > Date.now() ? await h.event : null; // one past its due time was sent as held
      if (event) await dispatcher.release(event, data);
      else await dispatcher.publish('document.changed', data);
    },
  };
}
