import { ObservableV2 } from 'lib0/observable';

/**
 * lib0's ObservableV2 whose `emit` of an event nobody listens to costs nothing: lib0 makes a
 * Map and copies it to an array for each. A document handle and its link emit a status or
 * state change or two per document opened, mostly unheard: a client opening 1,000 documents
 * made thousands of them, garbage its collector then had to sweep while the documents synced.
 */
export class QuietObservable<EVENTS extends { [key in keyof EVENTS]: (...args: any[]) => void }> extends ObservableV2<EVENTS> {
  override emit<NAME extends keyof EVENTS & string>(name: NAME, args: Parameters<EVENTS[NAME]>): void {
    if (this._observers.has(name)) super.emit(name, args);
  }
}
