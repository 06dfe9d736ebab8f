/**
 * One generation at a time, the others waiting in a bounded first-in-first-out queue. A request
 * that finds the queue full is refused at once (the server answers 503); one whose client goes
 * away while waiting leaves the queue.
 */

/** Thrown by {@link GenerationQueue.enter} when the queue is full. */
export class QueueFullError extends Error {
  override name = 'QueueFullError';
}

/** A place in the queue: wait for `ready`, then `release()` when done (always, even on error). */
export interface Ticket {
  ready: Promise<void>;
  release(): void;
}

/** The queue of {@link createServer}: `enter()` takes a place synchronously, `ready` resolves at its turn. */
export class GenerationQueue {
  private running = false;
  private readonly waiting: { start: () => void; fail: (err: unknown) => void }[] = [];
  /** Most requests seen waiting at once. */
  maxWaitingSeen = 0;

  constructor(
    /** Requests allowed to wait while one runs. */
    readonly maxWaiting: number,
  ) {}

  get active(): boolean {
    return this.running;
  }

  get waitingCount(): number {
    return this.waiting.length;
  }

  /**
   * Takes a place, synchronously: throws {@link QueueFullError} when every place is taken.
   * `ready` rejects with the signal's reason if `signal` aborts while waiting. `release()` before
   * `ready` leaves the queue without running.
   */
  enter(signal?: AbortSignal): Ticket {
    if (!this.running) {
      this.running = true;
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        this.startNext();
      };
      return { ready: Promise.resolve(), release };
    }
    if (this.waiting.length >= this.maxWaiting) {
      throw new QueueFullError(`The server is busy: one generation is running and ${this.waiting.length} are waiting (the most allowed).`);
    }
    let started = false;
    let released = false;
    let item!: { start: () => void; fail: (err: unknown) => void };
    const leave = () => {
      const i = this.waiting.indexOf(item);
      if (i >= 0) this.waiting.splice(i, 1);
    };
    const ready = new Promise<void>((resolve, reject) => {
      item = {
        start: () => {
          started = true;
          resolve();
        },
        fail: reject,
      };
      this.waiting.push(item);
      signal?.addEventListener(
        'abort',
        () => {
          if (started || released) return;
          leave();
          released = true; // never ran: nothing to hand on
          reject(signal.reason);
        },
        { once: true },
      );
    });
    // The holder may be busy (tokenizing) when `ready` rejects; it sees the rejection when it awaits.
    ready.catch(() => {});
    this.maxWaitingSeen = Math.max(this.maxWaitingSeen, this.waiting.length);
    const release = () => {
      if (released) return;
      released = true;
      if (started) this.startNext();
      else leave();
    };
    return { ready, release };
  }

  private startNext(): void {
    const next = this.waiting.shift();
    if (next) next.start();
    else this.running = false;
  }

  /** Fails every waiting request with `reason` (the server is closing). */
  rejectWaiting(reason: unknown): void {
    for (const item of this.waiting.splice(0)) item.fail(reason);
  }
}
