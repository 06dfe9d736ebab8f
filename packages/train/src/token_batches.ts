/** One batch of next-token training windows: `labels[b][t]` is the token after `inputs[b][t]`. */
export interface TokenBatch {
  inputs: number[][];
  labels: number[][];
}

/** Options of {@link packTokenStream}. */
export interface PackOptions {
  /** Tokens per row of `inputs`. */
  seqLength: number;
  /** Rows per batch. */
  batchSize: number;
  /** Put between documents (an end-of-text id) so the model learns where one ends; default none. */
  separator?: number;
  /** Also yield a last, smaller batch made of the rows left (default false: drop them). */
  keepLast?: boolean;
}

/**
 * Packs documents of any lengths into full rows, as LM pre-training does: the documents are joined
 * into one stream (with `separator` between them) and cut into windows of `seqLength + 1` tokens
 * sharing their edge token, each giving `seqLength` inputs and the `seqLength` labels after them.
 * No padding, so every position trains; a row may span two documents. Reads the documents lazily.
 */
export function* packTokenStream(documents: Iterable<readonly number[]>, options: PackOptions): Generator<TokenBatch> {
  const { seqLength, batchSize } = options;
  for (const [key, n] of [
    ['seqLength', seqLength],
    ['batchSize', batchSize],
  ] as const) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`packTokenStream: ${key} must be a whole number ≥ 1, got ${n}.`);
  }
  let stream: number[] = [];
  let start = 0; // the next window begins here: cutting from the front each row would be quadratic
  let rows: number[][] = [];
  let first = true;
  const flush = function* (): Generator<TokenBatch> {
    while (stream.length - start >= seqLength + 1) {
      rows.push(stream.slice(start, start + seqLength + 1));
      start += seqLength; // the edge token starts the next window
      if (rows.length === batchSize) {
        yield toBatch(rows);
        rows = [];
      }
    }
    stream = stream.slice(start);
    start = 0;
  };
  for (const doc of documents) {
    if (!first && options.separator !== undefined) stream.push(options.separator);
    first = false;
    for (const id of doc) stream.push(id);
    yield* flush();
  }
  if (options.keepLast && rows.length > 0) yield toBatch(rows);
}

function toBatch(rows: number[][]): TokenBatch {
  return { inputs: rows.map((r) => r.slice(0, -1)), labels: rows.map((r) => r.slice(1)) };
}
