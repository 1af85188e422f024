import { ObservableV2 } from 'lib0/observable';

type Listener = (...args: any[]) => void;

/**
 * lib0's ObservableV2 without its garbage, for the objects a client or relay makes per document
 * (a document handle, its link): lib0 copies an event's listeners into a new array (through a
 * new Map when nobody listens) for every event, heard or not, and keeps each event's listeners
 * in a Set even for one (~150 bytes; a handle listens to four events of its link, for each of
 * the thousands of documents a client may open). Here an event with one listener keeps the
 * function itself and calls it without a copy; an unheard event costs a lookup.
 *
 * Same contract as lib0's: a listener added during an emit is not called by it, one removed
 * during it by an earlier listener still is (several listeners are copied first), the same
 * function added twice is one listener, `destroy` drops them all. The listeners live in a field
 * of this class: lib0's `_observers` stays empty (nothing else may rely on reading it).
 */
export class QuietObservable<EVENTS extends { [key in keyof EVENTS]: (...args: any[]) => void }> extends ObservableV2<EVENTS> {
  /**
   * Made on the first `on`. A plain property, not a `#` field: apps call a handle's methods
   * through proxies (Vue's `reactive`/`ref`), where `this` is the proxy and `#` fields throw.
   */
  private quietListeners: Map<string, Listener | Set<Listener>> | null = null;

  override on<NAME extends keyof EVENTS & string>(name: NAME, f: EVENTS[NAME]): EVENTS[NAME] {
    const listeners = (this.quietListeners ??= new Map());
    const current = listeners.get(name);
    if (current === undefined) listeners.set(name, f);
    else if (typeof current !== 'function') current.add(f);
    else if (current !== f) listeners.set(name, new Set([current, f]));
    return f;
  }

  override off<NAME extends keyof EVENTS & string>(name: NAME, f: EVENTS[NAME]): void {
    const listeners = this.quietListeners;
    const current = listeners?.get(name);
    if (current === f) listeners!.delete(name);
    else if (current !== undefined && typeof current !== 'function') {
      current.delete(f);
      if (current.size === 0) listeners!.delete(name);
    }
  }

  override emit<NAME extends keyof EVENTS & string>(name: NAME, args: Parameters<EVENTS[NAME]>): void {
    const current = this.quietListeners?.get(name);
    if (current === undefined) return;
    if (typeof current === 'function') current(...args);
    else for (const f of Array.from(current)) f(...args);
  }

  override destroy(): void {
    this.quietListeners = null;
    super.destroy();
  }
}
