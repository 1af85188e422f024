import type { RelayOptions } from './config.js';

/** A malformed flag or variable: the CLI prints its message and exits. */
export class CliError extends Error {}

/** One setting of the CLI: a --flag and its CAPSYNC_* variable (the flag wins). */
export interface Flag {
  flag: string;
  env: string;
  type: 'string' | 'boolean';
  /** Repeatable (--peer a --peer b); the values reach `apply` joined with commas, like the variable. */
  multiple?: boolean;
  help: string;
  apply(o: RelayOptions & { logLevel?: string }, v: string): void;
}

export const int = (name: string, v: string, min = 0, max = Number.MAX_SAFE_INTEGER): number => {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new CliError(`${name} must be an integer from ${min} to ${max}, got "${v}"`);
  }
  return n;
};
