import * as tf from '@tensorflow/tfjs-core';

/**
 * Scales gradients so that their global L2 norm (over every tensor together) is at most
 * `maxNorm`, as PyTorch's `clip_grad_norm_` does: factor `maxNorm / (norm + 1e-6)` when the norm is
 * larger, else unchanged. Returns new tensors (the caller owns them; `grads` stay the caller's)
 * and the norm before clipping.
 */
export function clipByGlobalNorm(grads: tf.NamedTensorMap, maxNorm: number): { grads: tf.NamedTensorMap; norm: number } {
  if (!(maxNorm > 0) || !Number.isFinite(maxNorm))
    throw new RangeError(`clipByGlobalNorm: maxNorm must be a positive number, got ${maxNorm}.`);
  const names = Object.keys(grads);
  const norm = globalNorm(grads);
  const factor = norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
  const out: tf.NamedTensorMap = {};
  for (const name of names) out[name] = factor === 1 ? tf.clone(grads[name]) : tf.mul(grads[name], factor);
  return { grads: out, norm };
}

/** √(Σ over every tensor of Σ g²). */
export function globalNorm(grads: tf.NamedTensorMap): number {
  const tensors = Object.values(grads);
  if (tensors.length === 0) return 0;
  const total = tf.tidy(() => tf.sqrt(tf.addN(tensors.map((g) => tf.sum(tf.square(g))))));
  const norm = total.dataSync()[0];
  total.dispose();
  return norm;
}
