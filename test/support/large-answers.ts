import * as Y from 'yjs';
import { ProtocolClient } from './protocol-client.js';

/** A document with `bytes` of text, acknowledged (durable) by the relay; resolves with the text. */
export async function seedDoc(url: string, bytes: number, timeoutMs = 60_000): Promise<string> {
  const writer = await ProtocolClient.synced(url);
  const text = 'x'.repeat(bytes);
  await writer.waitForAck(writer.type(text), timeoutMs);
  await writer.close();
  return text;
}

/**
 * A sync step 1 state vector whose answer is the whole document as one message. A replica
 * that has nothing is answered in pieces, each sent once the one before was written out
 * (SessionReplica.stateUpdates), so a reader that stops reading holds back at most two: the
 * send-buffer limits are then tested with what still goes in one piece, a diff (this state
 * vector names one client the document does not have).
 */
export function wholeDiffStateVector(): Uint8Array {
  const asker = new Y.Doc();
  asker.clientID = 424_242;
  asker.getText('elsewhere').insert(0, '.');
  return Y.encodeStateVector(asker);
}
