/**
 * Every LockBackend runs the LockBackend conformance suite: the embedded authority (on SQLite),
 * a forwarding backend to an authority relay (createRelay on port 0), the etcd backend against
 * a real etcd (one member, free ports, temp dir), and the PostgreSQL backend against a real
 * PostgreSQL (initdb in a temp dir, free port). Their way to the authority is cut by a TCP
 * fault proxy (forwarded, etcd, PostgreSQL) or by failing storage (embedded).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import { lockBackendConformance, type LockBackendHarness } from '@capsync/server/conformance';
import { createRelay, type RelayHandle } from '../src/create-relay.js';
import { EmbeddedLockBackend } from '../src/locks/embedded-backend.js';
import { EtcdLockBackend } from '../src/locks/etcd-backend.js';
import { ForwardingLockBackend } from '../src/locks/forwarding-backend.js';
import { PostgresLockBackend } from '../src/locks/postgres-backend.js';
import type { LockBackend } from '../src/locks/lock-backend.js';
import type { LockStore } from '../src/locks/lock-store.js';
import { createLogger } from '../src/logger.js';
import { SqliteDocStore } from '../src/storage/sqlite-store.js';
import { runConformance } from '../../../test/support/conformance.js';
import { describeEtcd } from '../../../test/support/describe-etcd.js';
import { describePostgres } from '../../../test/support/describe-postgres.js';
import { startEtcdCluster, type EtcdCluster } from '../../../test/support/etcd-cluster.js';
import { FaultProxy } from '../../../test/support/fault-proxy.js';

const OP_TIMEOUT_MS = 1_000;
const SLACK_MS = 150;
const logger = createLogger('silent');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'capsync-lock-backend-'));
const closeAfterAll: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of closeAfterAll.splice(0).reverse()) await c();
  fs.rmSync(root, { recursive: true, force: true });
});
let n = 0;

/** A LockStore whose every write fails while `cut` is set: the embedded authority's storage failing. */
function cuttableStore(inner: LockStore): { store: LockStore; cut(): void; heal(): void } {
  let cut = false;
  const gate = <A extends unknown[], R>(fn: (...args: A) => Promise<R>) => (...args: A) => (cut ? Promise.reject(new Error('disk gone')) : fn(...args));
  const store: LockStore = {
    loadLocks: () => inner.loadLocks(),
    grant: gate((k: string, o: string, e: number) => inner.grant(k, o, e)),
    renew: gate((k: string, t: number, e: number) => inner.renew(k, t, e)),
    end: gate((k: string, t: number) => inner.end(k, t)),
  };
  return { store, cut: () => void (cut = true), heal: () => void (cut = false) };
}

describe('EmbeddedLockBackend (SQLite) conformance', () => {
  const stores = new Map<LockBackend, SqliteDocStore>();
  const openOn = async (file: string): Promise<LockBackend> => {
    const store = new SqliteDocStore(file);
    closeAfterAll.push(() => store.close());
    const b = await EmbeddedLockBackend.open(store.locks);
    stores.set(b, store);
    return b;
  };
  runConformance(lockBackendConformance, {
    open: () => openOn(path.join(root, `embedded-${n++}`, 'capsync.db')),
    restart: async (b) => {
      const store = stores.get(b)!;
      await b.close();
      await store.close();
      return openOn(store.file);
    },
    openCuttable: async () => {
      const sqlite = new SqliteDocStore(path.join(root, `embedded-${n++}`, 'capsync.db'));
      closeAfterAll.push(() => sqlite.close());
      const { store, cut, heal } = cuttableStore(sqlite.locks);
      return { backend: await EmbeddedLockBackend.open(store), cut, heal };
    },
    absent: { openSibling: 'the embedded authority is its relay alone (other relays forward to it)' },
    // It answers from memory or after one SQLite commit; this is that commit's allowance on a loaded machine.
    opTimeoutMs: 200,
    slackMs: SLACK_MS,
    emitsExpired: true,
  } satisfies LockBackendHarness);
});

describe('ForwardingLockBackend conformance', () => {
  const PEER_TOKEN = 'conformance-peer-token';
  let authority: RelayHandle;
  beforeAll(async () => {
    authority = await createRelay({ port: 0, storage: 'memory', lockTimeoutMs: 2_000, peerToken: PEER_TOKEN });
    closeAfterAll.push(() => authority.close());
  });
  const connect = (url: string) => ForwardingLockBackend.connect({ url, token: async () => PEER_TOKEN, opTimeoutMs: OP_TIMEOUT_MS, logger, relayId: `conformance-${n++}` });
  runConformance(lockBackendConformance, {
    open: () => connect(authority.url),
    openSibling: () => connect(authority.url),
    restart: async (b) => {
      await b.close();
      return connect(authority.url);
    },
    openCuttable: async () => {
      const proxy = await FaultProxy.start(Number(new URL(authority.url).port));
      closeAfterAll.push(() => proxy.close());
      return { backend: await connect(`ws://127.0.0.1:${proxy.port}`), cut: () => proxy.setMode('hold'), heal: () => proxy.setMode('pass') };
    },
    opTimeoutMs: OP_TIMEOUT_MS,
    slackMs: SLACK_MS,
    emitsExpired: false,
  } satisfies LockBackendHarness);
});

describeEtcd('EtcdLockBackend conformance (a real etcd)', (etcdPath) => {
  let cluster: EtcdCluster;
  beforeAll(async () => {
    cluster = await startEtcdCluster({ size: 1, etcdPath });
    closeAfterAll.push(() => cluster.close());
    // A first grant with the default budget: the cases' 1 s one is for answers, not for a cold start.
    const warm = new EtcdLockBackend({ endpoints: cluster.endpoints });
    const g = await warm.acquire({ key: 'warm-up', ttlMs: 1_000, waitMs: 0, owner: 'sub:warm-up' });
    await warm.release(g.key, g.token, 'sub:warm-up');
    await warm.close();
  }, 30_000);
  const open = (endpoints = cluster.endpoints) => new EtcdLockBackend({ endpoints, opTimeoutMs: OP_TIMEOUT_MS });
  runConformance(lockBackendConformance, {
    open: async () => open(),
    openSibling: async () => open(),
    restart: async (b) => {
      await b.close();
      return open();
    },
    openCuttable: async () => {
      const proxy = await FaultProxy.start(cluster.members[0]!.clientPort);
      closeAfterAll.push(() => proxy.close());
      return { backend: open([`http://127.0.0.1:${proxy.port}`]), cut: () => proxy.setMode('hold'), heal: () => proxy.setMode('pass') };
    },
    opTimeoutMs: OP_TIMEOUT_MS,
    slackMs: SLACK_MS,
    emitsExpired: true,
  } satisfies LockBackendHarness);
});

describePostgres('PostgresLockBackend conformance (a real PostgreSQL)', (server) => {
  let url: string;
  beforeAll(async () => {
    url = await server().createDatabase();
  }, 30_000);
  const open = (at = url) => PostgresLockBackend.open({ url: at, opTimeoutMs: OP_TIMEOUT_MS });
  runConformance(lockBackendConformance, {
    // Every case's backend on the one database (its keys are fresh): as relays sharing it.
    open: () => open(),
    openSibling: () => open(),
    restart: async (b) => {
      await b.close();
      return open();
    },
    openCuttable: async () => {
      const proxy = await FaultProxy.start(server().port);
      closeAfterAll.push(() => proxy.close());
      const through = new URL(url);
      through.port = String(proxy.port);
      return { backend: await open(through.toString()), cut: () => proxy.setMode('hold'), heal: () => proxy.setMode('pass') };
    },
    opTimeoutMs: OP_TIMEOUT_MS,
    slackMs: SLACK_MS,
    emitsExpired: true,
  } satisfies LockBackendHarness);
});
