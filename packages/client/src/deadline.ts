import { UnavailableError } from '@capsync/core';

/** Races `promise` against a deadline; the deadline rejects with UnavailableError(`message()`). */
export function withTimeout<T>(promise: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new UnavailableError(message())), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
