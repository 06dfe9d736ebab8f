import * as tf from '@tensorflow/tfjs-core';
import { checkDim, checkRank, failShape, shapeStr } from './checks';
import { moeExperts, type ExpertWeight, type MoeExpertsOptions } from './moe_experts';
import { topKRouter } from './top_k_router';

/** Result of {@link sparseMoe}. */
export interface SparseMoeResult {
  /** Block output, same shape as the input [..., H]. */
  output: tf.Tensor;
  /** Router logits [N, E] with N = product of the leading dims (input of {@link loadBalancingLoss}). */
  routerLogits: tf.Tensor;
}

/**
 * The sparse MoE feed-forward (model guide: Mixture of experts): router logits `x·Wrᵀ`,
 * {@link topKRouter}, {@link moeExperts} (only routed tokens reach an expert). Differentiable
 * w.r.t. `x`, the router weight and both expert weights; with packed expert weights
 * (`PackedTensor`) w.r.t. `x` and the router weight, the experts frozen. The router stays float32
 * (mixed precision: only experts pack).
 *
 * @param x [..., H]
 * @param routerWeight [E, H] (`router.layer.weight`)
 * @param inputLinear [E, 2I, H] (`input_linear.weight`), float32 or packed
 * @param outputLinear [E, H, I] (`output_linear.weight`), float32 or packed
 * @param k experts per token
 *
 * @example
 * ```ts
 * const x = tf.randomNormal([2, 5, 8]);
 * const { output, routerLogits } = sparseMoe(x, tf.randomNormal([4, 8]),
 *   tf.randomNormal([4, 32, 8]), tf.randomNormal([4, 8, 16]), 2);
 * // output [2, 5, 8], routerLogits [10, 4]
 * ```
 */
export function sparseMoe(
  x: tf.Tensor,
  routerWeight: tf.Tensor,
  inputLinear: ExpertWeight,
  outputLinear: ExpertWeight,
  k: number,
  options: MoeExpertsOptions = {},
): SparseMoeResult {
  const op = 'sparseMoe';
  if (x.rank < 1) failShape(op, `x must be [..., H], got ${shapeStr(x.shape)}.`);
  checkRank(op, 'routerWeight', routerWeight, 2, '[E, H]');
  const h = x.shape[x.rank - 1];
  checkDim(op, 'routerWeight', routerWeight, 1, h, 'x', x, '[E, H]');
  checkRank(op, 'inputLinear', inputLinear, 3, '[E, 2I, H]');
  checkDim(op, 'inputLinear', inputLinear, 0, routerWeight.shape[0], 'routerWeight', routerWeight, '[E, 2I, H]');
  const routerLogits = tf.tidy(() => tf.matMul(tf.reshape(x, [-1, h]), routerWeight, false, true)); // [N, E]
  return sparseMoeFromRouterLogits(x, routerLogits, inputLinear, outputLinear, k, options);
}

/**
 * {@link sparseMoe} after its first step: `routerLogits` [N, E] are the router's logits for `x`
 * flattened to [N, H], computed by the caller (`SparseMoE` runs its router `Linear`, which holds
 * the weight as [H, E]: no transpose of it per call). Returns them with the output.
 */
export function sparseMoeFromRouterLogits(
  x: tf.Tensor,
  routerLogits: tf.Tensor,
  inputLinear: ExpertWeight,
  outputLinear: ExpertWeight,
  k: number,
  options: MoeExpertsOptions = {},
): SparseMoeResult {
  return tf.tidy(() => {
    const flat = tf.reshape(x, [-1, x.shape[x.rank - 1]]); // [N, H]
    const { indices, weights } = topKRouter(routerLogits, k);
    const out = moeExperts(flat, inputLinear, outputLinear, indices, weights, options);
    return { output: tf.reshape(out, x.shape), routerLogits };
  });
}
