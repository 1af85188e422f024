import { ObservableV2 } from 'lib0/observable';

/**
 * lib0's emit, minus its garbage: lib0 copies an event's listeners into a new array (through a
 * new Map when nobody listens) for every event, heard or not. Yjs emits six events per
 * transaction, mostly unheard or heard by one listener; a client or relay opening 1,000
 * documents at once made tens of thousands of these, garbage its collector then swept while
 * they synced.
 * Same semantics as lib0's: a listener added during the emit is not called by it (one listener
 * is called directly, then the loop stops; more are copied first, as lib0 does).
 */
export function emitHeard(observers: Map<string, Set<(...args: any[]) => void>>, name: string, args: unknown[]): void {
  const listeners = observers.get(name);
  if (listeners === undefined) return;
  if (listeners.size === 1) {
    for (const f of listeners) {
      f(...args);
      break;
    }
    return;
  }
  for (const f of Array.from(listeners)) f(...args);
}

type Listener = (...args: any[]) => void;

/**
 * lib0's ObservableV2 with emitHeard's emit and lighter listeners: an event with one listener
 * keeps the function itself, not a Set of one (lib0 makes a Set per event name, ~150 bytes: a
 * document handle listens to four events of its link, for each of the thousands of documents a
 * client may open). Same contract as lib0's: a listener added during an emit is not called by
 * it, one removed during it by an earlier listener still is (the listeners are copied first).
 * `_observers` holds functions or Sets: only these methods may read it.
 */
export class QuietObservable<EVENTS extends { [key in keyof EVENTS]: (...args: any[]) => void }> extends ObservableV2<EVENTS> {
  private get listeners(): Map<string, Listener | Set<Listener>> {
    return this._observers as unknown as Map<string, Listener | Set<Listener>>;
  }

  override on<NAME extends keyof EVENTS & string>(name: NAME, f: EVENTS[NAME]): EVENTS[NAME] {
    const current = this.listeners.get(name);
    if (current === undefined) this.listeners.set(name, f);
    else if (typeof current !== 'function') current.add(f);
    else if (current !== f) this.listeners.set(name, new Set([current, f]));
    return f;
  }

  override off<NAME extends keyof EVENTS & string>(name: NAME, f: EVENTS[NAME]): void {
    const current = this.listeners.get(name);
    if (current === f) this.listeners.delete(name);
    else if (current !== undefined && typeof current !== 'function') {
      current.delete(f);
      if (current.size === 0) this.listeners.delete(name);
    }
  }

  override emit<NAME extends keyof EVENTS & string>(name: NAME, args: Parameters<EVENTS[NAME]>): void {
    const current = this.listeners.get(name);
    if (current === undefined) return;
    if (typeof current === 'function') current(...args);
    else for (const f of Array.from(current)) f(...args);
  }
}
