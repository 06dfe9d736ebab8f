/**
 * Incremental detokenisation for streaming: feed token ids one at a time and get the text they
 * complete, never half of a multi-byte character. Byte-level BPE tokens can end in the middle of
 * a UTF-8 sequence (an emoji is often 2–4 tokens); decoding such a prefix gives U+FFFD, so text
 * is held back while the decoded tail ends in U+FFFD and released once the character completes.
 *
 * Uses the windowed scheme of text-generation-inference: only the ids since the last released
 * text are re-decoded (plus the previous window as context), so the cost per token stays constant.
 */

/** What {@link TextStream} needs from a tokenizer (a `GraniteTokenizer` fits). */
export interface TokenDecoder {
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
}

/** Options of {@link TextStream}. */
export interface TextStreamOptions {
  /** Leave out special tokens such as `<|end_of_text|>` (default true, as chat UIs want). */
  skipSpecialTokens?: boolean;
}

const REPLACEMENT = '\uFFFD';

/**
 * Turns a stream of token ids into a stream of text deltas.
 *
 * @example
 * const stream = new TextStream(tokenizer);
 * for await (const id of generateTokens(model, prompt)) process.stdout.write(stream.push(id));
 * process.stdout.write(stream.flush());
 */
export class TextStream {
  private readonly ids: number[] = [];
  // ids[prefixOffset, readOffset) were decoded and released last time; they give the next
  // window its left context. Text of ids from readOffset on has not been released yet.
  private prefixOffset = 0;
  private readOffset = 0;
  private readonly skipSpecialTokens: boolean;

  constructor(
    private readonly tokenizer: TokenDecoder,
    options: TextStreamOptions = {},
  ) {
    this.skipSpecialTokens = options.skipSpecialTokens ?? true;
  }

  /** Every id pushed so far. */
  get tokenIds(): readonly number[] {
    return this.ids;
  }

  /** Adds one token id; returns the newly completed text ("" while a character is incomplete). */
  push(id: number): string {
    this.ids.push(id);
    const prefixText = this.decode(this.prefixOffset, this.readOffset);
    const newText = this.decode(this.prefixOffset, this.ids.length);
    if (newText.length > prefixText.length && !newText.endsWith(REPLACEMENT)) {
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      return newText.slice(prefixText.length);
    }
    return '';
  }

  /** Adds several ids; returns the text they complete. */
  pushAll(ids: Iterable<number>): string {
    let out = '';
    for (const id of ids) out += this.push(id);
    return out;
  }

  /**
   * Releases what is still held back, at the end of generation: an incomplete trailing
   * character decodes to U+FFFD, as the full decode would.
   */
  flush(): string {
    const prefixText = this.decode(this.prefixOffset, this.readOffset);
    const newText = this.decode(this.prefixOffset, this.ids.length);
    this.prefixOffset = this.readOffset = this.ids.length;
    return newText.length > prefixText.length ? newText.slice(prefixText.length) : '';
  }

  private decode(from: number, to: number): string {
    return from >= to ? '' : this.tokenizer.decode(this.ids.slice(from, to), { skipSpecialTokens: this.skipSpecialTokens });
  }
}

/**
 * Maps an async stream of token ids to text deltas (empty deltas are skipped; the held-back tail
 * is flushed at the end).
 */
export async function* streamText(
  ids: AsyncIterable<number> | Iterable<number>,
  tokenizer: TokenDecoder,
  options: TextStreamOptions = {},
): AsyncGenerator<string> {
  const stream = new TextStream(tokenizer, options);
  for await (const id of ids) {
    const delta = stream.push(id);
    if (delta) yield delta;
  }
  const tail = stream.flush();
  if (tail) yield tail;
}
