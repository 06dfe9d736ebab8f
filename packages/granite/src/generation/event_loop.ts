/** Yielding to the event loop between steps of work that would otherwise never let it run. */

/** The part of a browser's MessageChannel used below (the Node typings describe Node's own). */
interface TaskChannel {
  port1: { onmessage: (() => void) | null; close(): void };
  port2: { postMessage(message: null): void };
}

/**
 * Waits for one turn of the event loop (timers, I/O, signal handlers). With the cpu and wasm
 * backends every await of a step resolves as a microtask, so without this a generation would hold
 * the event loop until it ends: a Ctrl-C handler or a closed socket could not abort it. A turn
 * costs a few microseconds, against a millisecond or more per token.
 */
export function nextEventLoopTurn(): Promise<void> {
  if (typeof setImmediate === 'function') return new Promise((resolve) => setImmediate(resolve));
  // Browsers: a message is a task of its own, without the 4 ms clamp of nested setTimeout calls.
  return new Promise((resolve) => {
    const channel = new MessageChannel() as unknown as TaskChannel;
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}
