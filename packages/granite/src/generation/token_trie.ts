/**
 * A vocabulary as a flat trie over the decoded text of its tokens, laid out in preorder so a
 * whole-vocabulary walk is one pass over typed arrays: node `i`'s subtree is `[i, end[i])`, so a
 * rejected prefix skips every token that starts with it. Build it once per tokenizer and share it
 * between requests.
 */

/** Options of {@link TokenTrie}. */
export interface TokenTrieOptions {
  /** Ids never offered as text (end-of-sequence and other special tokens). */
  exclude?: Iterable<number>;
}

export class TokenTrie {
  /** Number of token ids (`vocab.length`). */
  readonly size: number;
  /** Number of trie nodes (node 0 is the root). */
  readonly nodeCount: number;
  /** Deepest node (the longest token, in UTF-16 code units). */
  readonly maxDepth: number;
  /** Code unit on the edge into each node. */
  readonly code: Uint16Array;
  readonly depth: Int32Array;
  /** One past the last node of each node's subtree. */
  readonly end: Int32Array;
  /** Tokens whose text ends at each node: `ids[first[i] .. first[i] + count[i])`. */
  readonly first: Int32Array;
  readonly count: Int32Array;
  readonly ids: Int32Array;
  private readonly texts: readonly string[];
  private readonly included: Uint8Array;

  /**
   * @param vocab Decoded text of each token id. Tokens with empty text, and tokens containing
   *   U+FFFD (a byte-level token that is only part of a UTF-8 character, whose text is not what it
   *   contributes), are never offered.
   */
  constructor(vocab: readonly string[], options: TokenTrieOptions = {}) {
    this.size = vocab.length;
    this.texts = vocab;
    const excluded = new Set(options.exclude ?? []);
    const order: number[] = [];
    for (let id = 0; id < vocab.length; id++) {
      const text = vocab[id];
      if (typeof text !== 'string' || text === '' || text.includes('\uFFFD') || excluded.has(id)) continue;
      order.push(id);
    }
    order.sort((a, b) => (vocab[a] < vocab[b] ? -1 : vocab[a] > vocab[b] ? 1 : a - b));
    this.included = new Uint8Array(vocab.length);
    for (const id of order) this.included[id] = 1;

    const code: number[] = [0];
    const depth: number[] = [0];
    const end: number[] = [0];
    const first: number[] = [0];
    const count: number[] = [0];
    const path: number[] = [0]; // node at each depth along the previous token's text
    let prev = '';
    let maxDepth = 0;
    for (let k = 0; k < order.length; k++) {
      const text = vocab[order[k]];
      let lcp = 0;
      const limit = Math.min(prev.length, text.length);
      while (lcp < limit && prev.charCodeAt(lcp) === text.charCodeAt(lcp)) lcp++;
      // Close the nodes of the previous text below the shared prefix.
      for (let d = prev.length; d > lcp; d--) end[path[d]] = code.length;
      for (let d = lcp + 1; d <= text.length; d++) {
        path[d] = code.length;
        code.push(text.charCodeAt(d - 1));
        depth.push(d);
        end.push(0);
        first.push(k);
        count.push(0);
      }
      path.length = text.length + 1;
      const node = path[text.length];
      if (count[node] === 0) first[node] = k;
      count[node]++;
      if (text.length > maxDepth) maxDepth = text.length;
      prev = text;
    }
    for (let d = prev.length; d >= 0; d--) end[path[d]] = code.length;
    this.nodeCount = code.length;
    this.maxDepth = maxDepth;
    this.code = Uint16Array.from(code);
    this.depth = Int32Array.from(depth);
    this.end = Int32Array.from(end);
    this.first = Int32Array.from(first);
    this.count = Int32Array.from(count);
    this.ids = Int32Array.from(order);
  }

  /** Whether the token may be offered as text. */
  includes(id: number): boolean {
    return id >= 0 && id < this.size && this.included[id] === 1;
  }

  /** Decoded text of a token. */
  text(id: number): string {
    return this.texts[id];
  }
}
