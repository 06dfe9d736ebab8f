import * as tf from '@tensorflow/tfjs-core';
import { checkDim, checkRank, fail } from './checks';
import { topKIndices } from './top_k_router_reference';

/**
 * Switch-style load-balancing loss over the router logits of all layers
 * (model guide: The load-balancing loss; as in HF's `load_balancing_loss_func`): concatenate the
 * layers' [N, E] logits, softmax over E, one-hot of each token's top-k choices, then
 * `loss = E · Σ_e f_e · P_e`, with `f_e` = (number of top-k choices of e) / T and `P_e` = mean
 * router probability of e over the T tokens. `Σ_e f_e = k`, so a perfectly uniform router gives
 * `k`. Differentiable w.r.t. the logits (through `P_e`; the choices carry no gradient).
 * Multiply by `router_aux_loss_coef` before adding it to the LM loss.
 *
 * @param routerLogits one [N, E] tensor per layer (N may differ between entries)
 * @param numExperts E
 * @param topK k
 * @returns a scalar
 *
 * @example
 * ```ts
 * const loss = loadBalancingLoss([tf.zeros([4, 8]), tf.zeros([4, 8])], 8, 2);
 * loss.print(); // 2 (uniform probabilities: E · Σ_e (k/E)·(1/E) = k)
 * ```
 */
export function loadBalancingLoss(routerLogits: tf.Tensor[], numExperts: number, topK: number): tf.Tensor {
  const op = 'loadBalancingLoss';
  if (routerLogits.length === 0) fail(op, 'routerLogits must hold at least one [N, E] tensor, got an empty list.');
  routerLogits.forEach((t, l) => {
    checkRank(op, `routerLogits[${l}]`, t, 2, '[N, E]');
    checkDim(op, `routerLogits[${l}]`, t, 1, numExperts, 'routerLogits[0]', routerLogits[0], '[N, E]');
  });
  if (!Number.isInteger(topK) || topK < 1 || topK > numExperts) fail(op, `topK must be in [1, ${numExperts}], got ${topK}.`);
  return tf.tidy(() => {
    const logits = routerLogits.length === 1 ? routerLogits[0] : tf.concat(routerLogits, 0); // [T, E]
    const t = logits.shape[0];
    const probs = tf.softmax(logits, -1); // [T, E]
    const chosen = tf.sum(tf.cast(tf.oneHot(topKIndices(logits, topK), numExperts), 'float32'), 1); // [T, E]
    const fraction = tf.div(tf.sum(chosen, 0), t); // [E]
    const meanProb = tf.mean(probs, 0); // [E]
    return tf.mul(tf.sum(tf.mul(fraction, meanProb)), numExperts);
  });
}
