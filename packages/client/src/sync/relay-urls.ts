import { CapsyncError } from '@capsync/core';

/** Validates relay base URLs (one or a list): a non-empty list of ws:// or wss:// URLs, or a CapsyncError. */
export function relayUrlList(url: string | readonly string[]): string[] {
  const urls = typeof url === 'string' ? [url] : Array.isArray(url) ? [...(url as readonly unknown[])] : null;
  // 'internal' is what every other bad client option throws: core has no code for bad options.
  if (!urls || urls.length === 0) throw new CapsyncError('internal', 'url must be a relay URL or a non-empty list of relay URLs');
  for (const u of urls) {
    if (typeof u !== 'string' || !/^wss?:\/\/[^/?#\s]/.test(u) || !parses(u)) {
      throw new CapsyncError('internal', `every relay url must start with ws:// or wss:// and name a host, got ${JSON.stringify(u)}`);
    }
  }
  return urls as string[];
}

/** `URL.canParse`, which older browsers lack. */
function parses(url: string): boolean {
  try {
    new URL(url);
    return true;
  } catch {
    return false;
  }
}
