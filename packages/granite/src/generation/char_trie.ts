/**
 * A small trie over UTF-16 code units, for finite string sets inside a JSON schema (enum values,
 * declared property names, canonical texts of literals). Node 0 is the root (the empty prefix).
 */
export class CharTrie {
  private readonly children: Map<number, number>[] = [new Map()];
  private readonly terminals: number[] = [-1];
  private readonly subtree: number[][] = [[]];

  /** Builds the trie; `terminal(node)` gives the index into `words` of the word ending there. */
  constructor(readonly words: readonly string[]) {
    words.forEach((word, index) => {
      let node = 0;
      this.subtree[0].push(index);
      for (let i = 0; i < word.length; i++) {
        const code = word.charCodeAt(i);
        let next = this.children[node].get(code);
        if (next === undefined) {
          next = this.children.length;
          this.children.push(new Map());
          this.terminals.push(-1);
          this.subtree.push([]);
          this.children[node].set(code, next);
        }
        node = next;
        this.subtree[node].push(index);
      }
      if (this.terminals[node] < 0) this.terminals[node] = index;
    });
  }

  /** The child of `node` along `code`, or -1. */
  child(node: number, code: number): number {
    return this.children[node].get(code) ?? -1;
  }

  /** Index of the word ending exactly at `node`, or -1. */
  terminal(node: number): number {
    return this.terminals[node];
  }

  /** Whether some word continues past `node`. */
  hasChildren(node: number): boolean {
    return this.children[node].size > 0;
  }

  /** Code units that continue `node`, with the nodes they lead to. */
  edges(node: number): IterableIterator<[number, number]> {
    return this.children[node].entries();
  }

  /** Indexes of the words that have `node` as a prefix (including one ending there). */
  wordsUnder(node: number): readonly number[] {
    return this.subtree[node];
  }
}
