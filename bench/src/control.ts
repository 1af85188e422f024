/**
 * The IPC control channel between the bench (parent) and a server under test (child process).
 *
 * The child announces `ready` with its port once it listens; the parent then asks it for
 * memory (after forcing GC; the child runs with --expose-gc), CPU time, and to stop. Requests
 * carry an id that the reply repeats. When the parent goes away the IPC channel closes and
 * the child exits, so no server outlives the bench. `stop` has no reply: the child closes and
 * exits, and the parent waits for the exit.
 */

export type ControlRequest =
  | { id: number; type: 'memory' }
  | { id: number; type: 'cpu' }
  | { id: number; type: 'stop' };

export type ControlReply =
  | { type: 'ready'; port: number }
  | { id: number; type: 'memory'; usage: NodeJS.MemoryUsage }
  /** `atMicros`: the child's monotonic clock when it measured (it may answer late when busy). */
  | { id: number; type: 'cpu'; usage: NodeJS.CpuUsage; atMicros: number };

/** What a server entrypoint hands to `serveControl`. */
export interface ControlledServer {
  port: number;
  /** Stops listening and closes connections. */
  close(): Promise<void>;
}

/** Child side: announces the port, answers requests; exits after `stop` or when the parent is gone. */
export function serveControl(server: ControlledServer): void {
  const send = (reply: ControlReply): void => {
    process.send?.(reply);
  };
  process.on('message', (msg: ControlRequest) => {
    switch (msg.type) {
      case 'memory':
        if (!globalThis.gc) throw new Error('server child must run with --expose-gc');
        globalThis.gc();
        globalThis.gc();
        send({ id: msg.id, type: 'memory', usage: process.memoryUsage() });
        return;
      case 'cpu':
        send({ id: msg.id, type: 'cpu', usage: process.cpuUsage(), atMicros: Number(process.hrtime.bigint() / 1000n) });
        return;
      case 'stop':
        // The parent waits for the exit.
        void server.close().finally(() => process.exit(0));
        return;
    }
  });
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready', port: server.port });
}
