/**
 * What {@link ChatSession.prompt} returns: one reply that can be awaited (its text), iterated
 * (its text as it is generated), or both. The generation starts at once, whether or not anyone
 * reads the stream, so awaiting alone is enough.
 */

/**
 * A reply being generated. `await response` is its text; `for await (const piece of response)`
 * yields the text as it comes (every iteration starts from the first piece, so it may begin
 * late); `await response.reply` is the whole {@link T} (tool calls, finish reason, stats).
 */
export class StreamedReply<T extends { text: string }> implements AsyncIterable<string>, PromiseLike<string> {
  /** Resolves with the whole reply when generation ends; rejects with its error (an abort's reason). */
  readonly reply: Promise<T>;
  private readonly pieces: string[] = [];
  private ended = false;
  private wake: (() => void)[] = [];

  /** `run` generates the reply, handing each piece of text to `emit` as it is produced. */
  constructor(run: (emit: (piece: string) => void) => Promise<T>) {
    const emit = (piece: string) => {
      if (piece === '') return;
      this.pieces.push(piece);
      this.notify();
    };
    this.reply = run(emit).finally(() => {
      this.ended = true;
      this.notify();
    });
    // A caller that only iterates sees the error through the iterator; the promise must not
    // also surface as an unhandled rejection. Handlers attached to `reply` still see it.
    this.reply.catch(() => undefined);
  }

  private notify(): void {
    const waiting = this.wake;
    this.wake = [];
    for (const resolve of waiting) resolve();
  }

  /** The reply's text once it has ended. */
  get text(): Promise<string> {
    return this.reply.then((r) => r.text);
  }

  // biome-ignore lint/suspicious/noThenProperty: a reply is awaitable by design (`await session.prompt(…)` gives its text)
  then<A = string, B = never>(
    onFulfilled?: ((text: string) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.text.then(onFulfilled, onRejected);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<string> {
    let next = 0;
    for (;;) {
      while (next < this.pieces.length) yield this.pieces[next++];
      if (this.ended) break;
      await new Promise<void>((resolve) => this.wake.push(resolve));
    }
    // Rethrows the generation's error, if it failed.
    await this.reply;
  }
}
