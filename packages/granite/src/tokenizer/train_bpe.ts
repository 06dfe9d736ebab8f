import { BYTE_TO_CHAR } from './byte_level';

/**
 * GPT-2's pre-tokenization, as `tokenizers`' ByteLevel pre-tokenizer applies it (`use_regex`):
 * merges never cross these pieces, so training must cut the text the same way.
 */
const GPT2_PIECES = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** Options of {@link trainByteLevelBpe}. */
export interface TrainBpeOptions {
  /** Tokens wanted: 256 bytes + merges + 1 end-of-text token (so merges = vocabSize − 257). */
  vocabSize: number;
  /** A pair seen fewer times than this is never merged (default 2). */
  minFrequency?: number;
}

/**
 * Learns byte-level BPE merges from `text` (for {@link byteLevelBpeFiles}): the text is cut into
 * GPT-2 pieces, each piece's UTF-8 bytes are symbols, and the most frequent adjacent pair (ties:
 * the pair whose symbols were made first) is merged into a new symbol, again and again. Pair counts
 * are updated only in the pieces a merge touches, so a 4 MB corpus takes seconds.
 *
 * @returns the merges in order, as pairs of byte-level token strings
 */
export function trainByteLevelBpe(text: string, options: TrainBpeOptions): [string, string][] {
  const { vocabSize } = options;
  const minFrequency = options.minFrequency ?? 2;
  if (!Number.isInteger(vocabSize) || vocabSize < 257 || vocabSize > 65536) {
    throw new RangeError(`trainByteLevelBpe: vocabSize must be a whole number in [257, 65536], got ${vocabSize}.`);
  }
  // Unique pieces with their counts: the corpus repeats most words many times.
  const counts = new Map<string, number>();
  for (const m of text.matchAll(GPT2_PIECES)) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
  const words: number[][] = [];
  const freq: number[] = [];
  const encoder = new TextEncoder();
  for (const [piece, n] of counts) {
    words.push([...encoder.encode(piece)]);
    freq.push(n);
  }
  const tokens: string[] = [...BYTE_TO_CHAR];
  const key = (a: number, b: number) => a * 65536 + b;
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  const addPairs = (w: number, sign: 1 | -1) => {
    const s = words[w];
    for (let i = 0; i + 1 < s.length; i++) {
      const k = key(s[i], s[i + 1]);
      pairCount.set(k, (pairCount.get(k) ?? 0) + sign * freq[w]);
      if (sign > 0) {
        let set = pairWords.get(k);
        if (set === undefined) pairWords.set(k, (set = new Set()));
        set.add(w);
      }
    }
  };
  for (let w = 0; w < words.length; w++) addPairs(w, 1);
  const merges: [string, string][] = [];
  while (tokens.length < vocabSize - 1) {
    let best = -1;
    let bestCount = minFrequency - 1;
    for (const [k, c] of pairCount) {
      if (c > bestCount || (c === bestCount && best >= 0 && k < best)) {
        best = k;
        bestCount = c;
      }
    }
    if (best < 0) break; // nothing left seen often enough
    const a = Math.floor(best / 65536);
    const b = best % 65536;
    const merged = tokens.length;
    tokens.push(tokens[a] + tokens[b]);
    merges.push([tokens[a], tokens[b]]);
    for (const w of pairWords.get(best) ?? []) {
      addPairs(w, -1);
      const s = words[w];
      const next: number[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          next.push(merged);
          i++;
        } else {
          next.push(s[i]);
        }
      }
      words[w] = next;
      addPairs(w, 1);
    }
    pairCount.delete(best);
    pairWords.delete(best);
    for (const [k, c] of pairCount) if (c <= 0) pairCount.delete(k);
  }
  return merges;
}
