import type { GraniteConfig } from './config';

/**
 * Checkpoint surgery, in one pure function run before loading: module names equal checkpoint
 * keys, so the only change is that a tied head is the embedding and a stray `lm_head.weight` in
 * a tied checkpoint is dropped, as transformers does when it ties the weights.
 */
export function convertWeights<T>(weights: Map<string, T>, cfg: GraniteConfig): Map<string, T> {
  const out = new Map(weights);
  if (cfg.tie_word_embeddings) out.delete('lm_head.weight');
  return out;
}
