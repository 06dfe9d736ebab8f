/**
 * Admission of generations: up to `parallel` run at once (decoded together as one batch) while
 * their state fits a byte budget; the others wait in a bounded first-in-first-out queue. A request
 * that finds the queue full is refused at once (the server answers 503 with Retry-After); one whose
 * client goes away while waiting leaves the queue.
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

/** Options of {@link GenerationQueue}. */
export interface GenerationQueueOptions {
  /** Generations running at once (default 1). */
  parallel?: number;
  /** Bytes of state the running generations may hold together (default: no limit). */
  budgetBytes?: number;
}

interface Waiting {
  cost: number;
  start: () => void;
  fail: (err: unknown) => void;
}

/** The queue of {@link createServer}: `enter()` takes a place synchronously, `ready` resolves at its turn. */
export class GenerationQueue {
  private runningCount = 0;
  private usedBytes = 0;
  private readonly waiting: Waiting[] = [];
  readonly parallel: number;
  readonly budgetBytes: number;
  /** Most requests seen waiting at once. */
  maxWaitingSeen = 0;

  constructor(
    /** Requests allowed to wait while others run. */
    readonly maxWaiting: number,
    options: GenerationQueueOptions = {},
  ) {
    this.parallel = options.parallel ?? 1;
    this.budgetBytes = options.budgetBytes ?? Infinity;
    if (!Number.isInteger(this.parallel) || this.parallel < 1)
      throw new RangeError(`parallel must be a positive integer, got ${options.parallel}.`);
  }

  /** True while a generation runs. */
  get active(): boolean {
    return this.runningCount > 0;
  }

  /** Generations running. */
  get running(): number {
    return this.runningCount;
  }

  /** Bytes of state the running generations were admitted with. */
  get bytesInUse(): number {
    return this.usedBytes;
  }

  get waitingCount(): number {
    return this.waiting.length;
  }

  private fits(cost: number): boolean {
    return this.runningCount < this.parallel && (this.runningCount === 0 || this.usedBytes + cost <= this.budgetBytes);
  }

  /**
   * Takes a place for a generation whose state needs `costBytes`, synchronously: throws
   * {@link QueueFullError} when every place is taken. `ready` rejects with the signal's reason if
   * `signal` aborts while waiting. `release()` before `ready` leaves the queue without running.
   */
  enter(signal?: AbortSignal, costBytes = 0): Ticket {
    let started = false;
    let released = false;
    const begin = () => {
      started = true;
      this.runningCount++;
      this.usedBytes += costBytes;
    };
    const release = () => {
      if (released) return;
      released = true;
      if (started) {
        this.runningCount--;
        this.usedBytes -= costBytes;
        this.startWaiting();
      } else {
        leave();
      }
    };
    let item: Waiting | undefined;
    const leave = () => {
      const i = item ? this.waiting.indexOf(item) : -1;
      if (i >= 0) this.waiting.splice(i, 1);
    };
    // First come, first served: nobody overtakes a waiting request.
    if (this.waiting.length === 0 && this.fits(costBytes)) {
      begin();
      return { ready: Promise.resolve(), release };
    }
    if (this.waiting.length >= this.maxWaiting) {
      throw new QueueFullError(
        `The server is busy: ${this.runningCount} generation(s) are running and ${this.waiting.length} are waiting (the most allowed).`,
      );
    }
    const ready = new Promise<void>((resolve, reject) => {
      item = {
        cost: costBytes,
        start: () => {
          begin();
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
          this.startWaiting();
        },
        { once: true },
      );
    });
    // The holder may be busy (tokenizing) when `ready` rejects; it sees the rejection when it awaits.
    ready.catch(() => {});
    this.maxWaitingSeen = Math.max(this.maxWaitingSeen, this.waiting.length);
    return { ready, release };
  }

  private startWaiting(): void {
    while (this.waiting.length && this.fits(this.waiting[0].cost)) this.waiting.shift()!.start();
  }

  /** Fails every waiting request with `reason` (the server is closing). */
  rejectWaiting(reason: unknown): void {
    for (const item of this.waiting.splice(0)) item.fail(reason);
  }
}
