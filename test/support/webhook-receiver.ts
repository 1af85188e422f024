import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { withTimeout } from './wait.js';

export interface ReceivedWebhook {
  headers: http.IncomingHttpHeaders;
  /** The raw body, as signed. */
  body: string;
  json: { id: string; type: string; createdAt: string; relayId: string; data: Record<string, unknown> };
  /** What the receiver answered ('hang': nothing, the connection left open). */
  answered: number | 'hang';
}

/**
 * A real HTTP endpoint on a free loopback port that records every webhook attempt and answers
 * what `answer` says (200 by default; a status, or 'hang' to never answer).
 */
export class WebhookReceiver extends EventEmitter<{ received: [ReceivedWebhook] }> {
  readonly received: ReceivedWebhook[] = [];
  answer: (r: Omit<ReceivedWebhook, 'answered'>) => number | 'hang' = () => 200;
  private readonly hanging = new Set<http.ServerResponse>();

  private constructor(
    private readonly server: http.Server,
    readonly url: string,
  ) {
    super();
  }

  static async start(path = '/hooks'): Promise<WebhookReceiver> {
    const server = http.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const receiver = new WebhookReceiver(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`);
    server.on('request', (req, res) => receiver.take(req, res));
    return receiver;
  }

  /** The attempts of deliveries that passed `test`, as they arrive (resolves with the first one). */
  waitFor(test: (r: ReceivedWebhook) => boolean, what: string, timeoutMs = 10_000): Promise<ReceivedWebhook> {
    const seen = this.received.find(test);
    if (seen) return Promise.resolve(seen);
    let listener!: (r: ReceivedWebhook) => void;
    return withTimeout(
      new Promise<ReceivedWebhook>((resolve) => {
        listener = (r) => test(r) && resolve(r);
        this.on('received', listener);
      }),
      timeoutMs,
      what,
    ).finally(() => this.off('received', listener));
  }

  /** Acknowledged (2xx) deliveries of event type `type`. */
  delivered(type?: string): ReceivedWebhook[] {
    return this.received.filter((r) => typeof r.answered === 'number' && r.answered < 300 && (!type || r.json.type === type));
  }

  async close(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private take(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const partial = { headers: req.headers, body, json: JSON.parse(body) as ReceivedWebhook['json'] };
      const answered = this.answer(partial);
      const r: ReceivedWebhook = { ...partial, answered };
      this.received.push(r);
      if (answered === 'hang') this.hanging.add(res);
      else res.writeHead(answered).end();
      this.emit('received', r);
    });
  }
}
