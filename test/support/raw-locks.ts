/**
 * A lock connection spoken by hand, frame by frame, as an attacker would (no capsync client in
 * between): what the adversarial lock tests send.
 */
import WebSocket from 'ws';
import { OWNER_KEY_PREFIX, PROTOCOL_VERSION, decodeMessage, encodeMessage, type LockOp, type LockReplyMessage, type Message } from '@capsync/core';

export const protocols = (token?: string) => (token ? ['capsync', `capsync.jwt.${token}`] : ['capsync']);
export const hello = (key?: string): Message => ({ type: 'hello', protocolVersion: PROTOCOL_VERSION, capabilities: ['ack', 'error', 'cp', ...(key ? [OWNER_KEY_PREFIX + key] : [])] });

/** A lock connection spoken by hand: what an attacker sends, frame by frame. */
export class RawLocks {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve(r: LockReplyMessage): void; reject(err: Error): void }>();
  /** Every refusal message received (checked for leaked tokens). */
  readonly messages: string[] = [];

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const msg = decodeMessage(new Uint8Array(data));
      if (msg.type !== 'lock-reply') return;
      if (msg.message) this.messages.push(msg.message);
      this.waiting.get(msg.id)?.resolve(msg);
      this.waiting.delete(msg.id);
    });
    ws.on('close', (code: number) => {
      for (const w of this.waiting.values()) w.reject(new Error(`lock connection closed (${code})`));
      this.waiting.clear();
    });
  }

  static async open(url: string, options: { token?: string; ownerKey?: string } = {}): Promise<RawLocks> {
    const ws = new WebSocket(`${url}/.capsync/locks`, protocols(options.token));
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.send(encodeMessage(hello(options.ownerKey)));
    return new RawLocks(ws);
  }

  request(op: LockOp, key: string, token = 0, ttlMs = 0, waitMs = 0): Promise<LockReplyMessage> {
    const id = this.nextId++;
    const reply = new Promise<LockReplyMessage>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    this.ws.send(encodeMessage({ type: 'lock-request', id, op, key, token, ttlMs, waitMs }));
    return reply;
  }

  /** The reply's code, 'ok' for success. */
  async code(op: LockOp, key: string, token = 0, ttlMs = 0, waitMs = 0): Promise<string> {
    return (await this.request(op, key, token, ttlMs, waitMs)).code || 'ok';
  }

  close(): void {
    this.ws.close();
  }
}

