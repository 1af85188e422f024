import type { UpdateSource } from '../relay/origins.js';

/** Client addresses whose HTTP source is kept (least recently used goes first past it). */
const MAX_HTTP_SOURCES = 10_000;

/**
 * The UpdateSource of HTTP writes, one per client address (the TCP peer's), as leases and
 * connections are counted per address. Where there is no identity (an open relay, a token
 * without `sub`), `--max-clients-per-identity` and `--max-pending-updates-per-connection`
 * count per source: with one source for every HTTP writer, one request using up the budget
 * stopped every later POST of anyone under a fresh client id. Per address, a client only
 * spends its own (and its address's: writers behind one NAT share it).
 *
 * Bounded: at most MAX_HTTP_SOURCES addresses, the least recently seen forgotten first. A
 * forgotten address starts over with a fresh budget, which takes 10,000 other addresses
 * writing in between: whoever has that many has that many budgets anyway.
 */
export class HttpSources {
  private readonly byAddress = new Map<string, UpdateSource>();

  constructor(private readonly max = MAX_HTTP_SOURCES) {}

  /** The source of writes from `address` (the same object for as long as it is kept). */
  of(address: string | undefined): UpdateSource {
    const key = address ?? '';
    let source = this.byAddress.get(key);
    if (source) this.byAddress.delete(key); // re-inserted below: most recently used last
    else source = { kind: 'http' };
    this.byAddress.set(key, source);
    if (this.byAddress.size > this.max) this.byAddress.delete(this.byAddress.keys().next().value!);
    return source;
  }
}
