/**
 * Choosing the next token from a row of logits: the sampler, under a constraint on which tokens may
 * come next (JSON mode), reporting the chosen token's log-probability and the most likely
 * alternatives when asked. Shared by `generateBatch` and `BatchGenerator`.
 */
import { maskLogits } from './mask_logits';
import type { Sampler } from './sampling';

/** Which tokens may come next, and advancing past the one chosen (e.g. a {@link JsonConstraint}). */
export interface TokenConstraint {
  allowedTokens(): Uint8Array;
  accept(tokenId: number): void;
}

/** A generated token with its log-probability under the model (log-softmax of its logits), and the most likely ones. */
export interface TokenLogprob {
  id: number;
  logprob: number;
  top: { id: number; logprob: number }[];
}

/** What {@link chooseToken} adds to plain sampling. */
export interface TokenChoiceOptions {
  /** Only tokens it allows are sampled; the one chosen is passed to its `accept`. */
  constraint?: TokenConstraint;
  /** Report each token's log-probability and the `top` most likely tokens (before any constraint). */
  logprobs?: { top: number; onToken(entry: TokenLogprob): void };
}

/** Log-softmax of `logits[0, limit)` at `id`, and the `top` highest entries. */
function logprobsOf(logits: Float32Array, limit: number, id: number, top: number): TokenLogprob {
  let max = -Infinity;
  for (let i = 0; i < limit; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < limit; i++) sum += Math.exp(logits[i] - max);
  const logZ = max + Math.log(sum);
  const best: number[] = [];
  for (let i = 0; i < limit && top > 0; i++) {
    if (best.length < top || logits[i] > logits[best[best.length - 1]]) {
      let at = best.length < top ? best.length : best.length - 1;
      best[at] = i;
      while (at > 0 && logits[best[at]] > logits[best[at - 1]]) {
        [best[at], best[at - 1]] = [best[at - 1], best[at]];
        at--;
      }
    }
  }
  return { id, logprob: logits[id] - logZ, top: best.map((i) => ({ id: i, logprob: logits[i] - logZ })) };
}

/** Samples the next token from `logits` (a row of its own: the constraint masks it in place). */
export function chooseToken(
  sampler: Sampler,
  logits: Float32Array,
  history: readonly number[],
  vocabLimit: number,
  options: TokenChoiceOptions,
): number {
  const raw = options.logprobs && options.constraint ? logits.slice() : logits;
  if (options.constraint) maskLogits(logits, options.constraint.allowedTokens());
  const id = sampler.sample(logits, history);
  options.constraint?.accept(id);
  if (options.logprobs) options.logprobs.onToken(logprobsOf(raw, Math.min(vocabLimit, raw.length), id, options.logprobs.top));
  return id;
}
