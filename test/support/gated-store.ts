import { StorageError, type AppendResult, type ClientClaimConflict, type DocStore, type StoredDoc } from '@capsync/core';

/**
 * Wraps a real DocStore and holds every `load` until `open()` is called, to test what the
 * relay does while a document is still loading. Everything else passes straight through.
 */
export class GatedLoadStore implements DocStore {
  private release!: () => void;
  private readonly gate = new Promise<void>((resolve) => (this.release = resolve));
  private loadStartedResolve!: () => void;
  /** Resolves when the relay first called `load`. */
  readonly loadStarted = new Promise<void>((resolve) => (this.loadStartedResolve = resolve));

  constructor(private readonly inner: DocStore) {}

  open(): void {
    this.release();
  }

  async load(name: string): Promise<StoredDoc> {
    this.loadStartedResolve();
    await this.gate;
    return this.inner.load(name);
  }
  append(name: string, update: Uint8Array, incarnation?: number): Promise<AppendResult> {
    return this.inner.append(name, update, incarnation);
  }
  compact(name: string, snapshot: Uint8Array, through: number, incarnation?: number): Promise<void> {
    return this.inner.compact(name, snapshot, through, incarnation);
  }
  claimClients(name: string, owner: string, clientIds: number[]): Promise<ClientClaimConflict[]> {
    return this.inner.claimClients(name, owner, clientIds);
  }
  loadClientOwners(name: string): Promise<[number, string][]> {
    return this.inner.loadClientOwners(name);
  }
  delete(name: string): Promise<number> {
    return this.inner.delete(name);
  }
  list(): Promise<string[]> {
    return this.inner.list();
  }
  ping(): Promise<void> {
    return this.inner.ping();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/**
 * Wraps a real DocStore and holds every `append` while the gate is shut, to test that the
 * relay acknowledges nothing before it is committed.
 */
export class GatedAppendStore implements DocStore {
  private held: (() => void)[] = [];
  private shut = false;

  constructor(private readonly inner: DocStore) {}

  /** Holds appends from now on. */
  hold(): void {
    this.shut = true;
  }
  /** Lets held and future appends through. */
  release(): void {
    this.shut = false;
    for (const go of this.held.splice(0)) go();
  }

  private heldWaiters: (() => void)[] = [];
  /** Resolves once an append is held (at once if one is). */
  whenHeld(): Promise<void> {
    if (this.held.length > 0) return Promise.resolve();
    return new Promise((resolve) => this.heldWaiters.push(resolve));
  }

  async append(name: string, update: Uint8Array, incarnation?: number): Promise<AppendResult> {
    if (this.shut) {
      const gate = new Promise<void>((resolve) => this.held.push(resolve));
      for (const told of this.heldWaiters.splice(0)) told();
      await gate;
    }
    return this.inner.append(name, update, incarnation);
  }
  load(name: string): Promise<StoredDoc> {
    return this.inner.load(name);
  }
  compact(name: string, snapshot: Uint8Array, through: number, incarnation?: number): Promise<void> {
    return this.inner.compact(name, snapshot, through, incarnation);
  }
  claimClients(name: string, owner: string, clientIds: number[]): Promise<ClientClaimConflict[]> {
    return this.inner.claimClients(name, owner, clientIds);
  }
  loadClientOwners(name: string): Promise<[number, string][]> {
    return this.inner.loadClientOwners(name);
  }
  delete(name: string): Promise<number> {
    return this.inner.delete(name);
  }
  list(): Promise<string[]> {
    return this.inner.list();
  }
  ping(): Promise<void> {
    return this.inner.ping();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/**
 * Wraps a real DocStore and makes it unreachable on demand, as a database that is down or
 * partitioned away: while `down`, appends and pings reject with a retryable StorageError and
 * store nothing. `appendAttempts` counts every append tried (the relay tries again).
 */
export class UnreachableStore implements DocStore {
  private isDown = false;
  appendAttempts = 0;

  constructor(private readonly inner: DocStore) {}

  down(): void {
    this.isDown = true;
  }
  up(): void {
    this.isDown = false;
  }

  private check(): void {
    if (this.isDown) throw new StorageError('connect ECONNREFUSED (test: storage is down)', { retryable: true });
  }

  async append(name: string, update: Uint8Array, incarnation?: number): Promise<AppendResult> {
    this.appendAttempts++;
    this.check();
    return this.inner.append(name, update, incarnation);
  }
  load(name: string): Promise<StoredDoc> {
    return this.inner.load(name);
  }
  compact(name: string, snapshot: Uint8Array, through: number, incarnation?: number): Promise<void> {
    return this.inner.compact(name, snapshot, through, incarnation);
  }
  async claimClients(name: string, owner: string, clientIds: number[]): Promise<ClientClaimConflict[]> {
    this.check();
    return this.inner.claimClients(name, owner, clientIds);
  }
  loadClientOwners(name: string): Promise<[number, string][]> {
    return this.inner.loadClientOwners(name);
  }
  delete(name: string): Promise<number> {
    return this.inner.delete(name);
  }
  list(): Promise<string[]> {
    return this.inner.list();
  }
  async ping(): Promise<void> {
    this.check();
    return this.inner.ping();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
