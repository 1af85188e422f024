import { afterEach } from 'vitest';
import WebSocket from 'ws';
import { createClient, type CapsyncClient, type ClientOptions } from '@capsync/client';
import { TEST_CLIENT_DEFAULTS } from './client-fixture.js';
import { RestartableRelay } from './restartable-relay.js';

/** What a test file's tests start, each disposed after its test (see testScope). */
export interface TestScope {
  /** Runs `dispose` after the current test; the last deferred runs first. */
  defer(dispose: () => Promise<unknown> | unknown): void;
  /** A relay process on port 0 (RestartableRelay) with `args`, disposed after the test. */
  relay(args?: string[]): Promise<RestartableRelay>;
  /** A capsync client of `url` (memory storage, `ws`, the test defaults), closed after the test. */
  client(url: string | string[], options?: Partial<ClientOptions>): CapsyncClient;
}

/**
 * The per-file test fixture: call once at the top of a test file; it registers an `afterEach`
 * that disposes what the test started, last first (clients before the relays they talk to).
 */
export function testScope(): TestScope {
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  afterEach(async () => {
    for (const f of cleanups.splice(0).reverse()) await f();
  });
  const defer = (dispose: () => Promise<unknown> | unknown): void => void cleanups.push(dispose);
  return {
    defer,
    async relay(args: string[] = []) {
      const r = await RestartableRelay.start(args);
      defer(() => r.dispose());
      return r;
    },
    client(url, options = {}) {
      const c = createClient({ url, storage: 'memory', WebSocket: WebSocket as never, ...TEST_CLIENT_DEFAULTS, ...options });
      defer(() => c.close());
      return c;
    },
  };
}
