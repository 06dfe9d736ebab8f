import type { GraniteMoeHybridConfig } from './config';

/**
 * Checkpoint surgery, in one pure function run before loading: the checkpoint's names in, the
 * model's out. Granite checkpoints need almost none: module names equal checkpoint keys, and
 * state dicts, loading and saving all speak the checkpoint's shapes ([out, in] linear weights,
 * [C, 1, K] conv weights). What remains: a tied head is the embedding, so a stray `lm_head.weight`
 * in a tied checkpoint is dropped, as Hugging Face does when it ties the weights.
 *
 * Not surgery: a float32 Linear weight is *held* [in, out] (core's `Parameter` with layout
 * `'transposed'`, because tfjs-wasm multiplies by a transposed operand 5–10× slower), and its
 * `assign` transposes what loading hands it. That is the module's storage, invisible at its
 * interface, so it lives with the module rather than here.
 *
 * Works on any value type (tensor shapes for validation, tensor readers for loading).
 */
export function convertWeights<T>(weights: Map<string, T>, cfg: GraniteMoeHybridConfig): Map<string, T> {
  const out = new Map(weights);
  if (cfg.tie_word_embeddings) out.delete('lm_head.weight');
  return out;
}
