import { UnavailableError } from '@capsync/core';

/**
 * Races `promise` against a deadline; the deadline rejects with UnavailableError(`message()`).
 * One promise and one timer (no Promise.race, no promise for the deadline): a client opening
 * 1,000 documents and awaiting whenSynced on each makes one per document.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, message: () => string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new UnavailableError(message())), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
