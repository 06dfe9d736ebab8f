/**
 * Constrained decoding of JSON: which token ids may come next so that the output stays a prefix of
 * a value valid against a schema ({@link JsonAutomaton}), and only ends once the value is complete.
 *
 * `allowedTokens` walks the vocabulary trie once with the automaton state: a token's automaton
 * work is shared with every token starting with the same text, and a rejected prefix prunes its
 * whole subtree, so a step costs about the number of trie nodes still reachable rather than
 * vocabulary size × token length.
 *
 * @example
 * const constraint = new JsonConstraint(compileJsonSchema({ type: 'object' }), vocabTexts, [eosId]);
 * while (!constraint.done) {
 *   const logits = await model.nextLogits();
 *   maskLogits(logits, constraint.allowedTokens());
 *   constraint.accept(sampler.sample(logits, history));
 * }
 */
import type { JsonAutomaton, JsonState } from './json_schema_automaton';
import { TokenTrie } from './token_trie';

export class JsonConstraint {
  /** Length of the masks returned by {@link allowedTokens}. */
  readonly vocabSize: number;
  private readonly trie: TokenTrie;
  private readonly eos: ReadonlySet<number>;
  private current: JsonState;
  private ended = false;
  private output = '';
  private cachedFor: JsonState | null = null;
  private cachedMask: Uint8Array | null = null;
  private readonly states: JsonState[];

  /**
   * @param vocab Decoded text of each token id (special tokens as `''`, they are never allowed),
   *   or a prebuilt {@link TokenTrie} to share between requests.
   * @param eosTokenIds Ids that end the output; allowed exactly when the value is complete.
   */
  constructor(
    readonly automaton: JsonAutomaton,
    vocab: readonly string[] | TokenTrie,
    eosTokenIds: readonly number[],
  ) {
    for (const id of eosTokenIds) {
      if (!Number.isInteger(id) || id < 0) throw new RangeError(`eosTokenIds: expected non-negative integers, got ${id}`);
    }
    this.eos = new Set(eosTokenIds);
    this.trie = vocab instanceof TokenTrie ? vocab : new TokenTrie(vocab, { exclude: eosTokenIds });
    this.vocabSize = Math.max(this.trie.size, ...eosTokenIds.map((id) => id + 1));
    this.current = automaton.initial;
    this.states = new Array<JsonState>(this.trie.maxDepth + 1);
  }

  /** The automaton state after the accepted tokens. */
  get state(): JsonState {
    return this.current;
  }

  /** Text of the accepted tokens. */
  get text(): string {
    return this.output;
  }

  /** Whether an end-of-sequence token may come now. */
  get canEnd(): boolean {
    return !this.ended && this.automaton.canEnd(this.current);
  }

  /** Whether the value is finished and nothing but the end may follow. */
  get isComplete(): boolean {
    return this.automaton.isComplete(this.current);
  }

  /** True once an end-of-sequence token was accepted, or the value is complete (only the end could follow). */
  get done(): boolean {
    return this.ended || this.automaton.isComplete(this.current);
  }

  /**
   * A mask over token ids (length {@link vocabSize}): 1 where the token may come next. The array
   * is cached per state and must not be modified. All zeros once an end token was accepted.
   */
  allowedTokens(): Uint8Array {
    if (this.cachedFor === this.current && this.cachedMask) return this.cachedMask;
    const mask = new Uint8Array(this.vocabSize);
    if (!this.ended) {
      this.walk(mask);
      const end = this.automaton.canEnd(this.current) ? 1 : 0;
      for (const id of this.eos) mask[id] = end;
    }
    this.cachedFor = this.current;
    this.cachedMask = mask;
    return mask;
  }

  /** Whether one token may come next (without walking the vocabulary). */
  isAllowed(tokenId: number): boolean {
    if (this.ended) return false;
    if (this.eos.has(tokenId)) return this.automaton.canEnd(this.current);
    return this.trie.includes(tokenId) && this.automaton.advance(this.current, this.trie.text(tokenId)) !== null;
  }

  /** Advances past a token. Throws if it is not allowed (see {@link allowedTokens}). */
  accept(tokenId: number): void {
    if (this.ended) throw new Error('JsonConstraint.accept: the output already ended');
    if (this.eos.has(tokenId)) {
      if (!this.automaton.canEnd(this.current)) {
        throw new Error(`JsonConstraint.accept: end token ${tokenId} is not allowed, the JSON value is incomplete`);
      }
      this.ended = true;
      this.cachedMask = null;
      return;
    }
    if (!this.trie.includes(tokenId)) throw new Error(`JsonConstraint.accept: token ${tokenId} is never allowed`);
    const text = this.trie.text(tokenId);
    const next = this.automaton.advance(this.current, text);
    if (next === null) {
      throw new Error(
        `JsonConstraint.accept: token ${tokenId} (${JSON.stringify(text)}) is not allowed after ${JSON.stringify(this.output)}`,
      );
    }
    this.current = next;
    this.output += text;
  }

  private walk(mask: Uint8Array): void {
    const { code, depth, end, first, count, ids, nodeCount } = this.trie;
    const automaton = this.automaton;
    const states = this.states;
    states[0] = this.current;
    let i = 1;
    while (i < nodeCount) {
      const s = automaton.advanceCode(states[depth[i] - 1], code[i]);
      if (s === null) {
        i = end[i];
        continue;
      }
      states[depth[i]] = s;
      for (let k = first[i], n = count[i]; n > 0; k++, n--) mask[ids[k]] = 1;
      i++;
    }
  }
}
