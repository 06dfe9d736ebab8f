import type { GraniteMoeHybridConfig } from './config';

/**
 * Checkpoint surgery, in one pure function run before loading. Granite checkpoints need
 * almost none: module names equal checkpoint keys and graniteflow keeps PyTorch layouts ([out, in]
 * linear weights, [C, 1, K] conv weights). What remains: a tied head is the embedding, so a stray
 * `lm_head.weight` in a tied checkpoint is dropped, as Hugging Face does when it ties the weights.
 *
 * Works on any value type (tensor shapes for validation, tensor readers for loading).
 */
export function convertWeights<T>(weights: Map<string, T>, cfg: GraniteMoeHybridConfig): Map<string, T> {
  const out = new Map(weights);
  if (cfg.tie_word_embeddings) out.delete('lm_head.weight');
  return out;
}
