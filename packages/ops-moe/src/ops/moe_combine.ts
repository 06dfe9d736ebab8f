import type * as tf from '@tensorflow/tfjs-core';
import { moeCombineKernel } from '../kernels/MoeCombine';
import { checkDim, checkDtype, checkRank } from './checks';

/**
 * Weighted scatter-add of expert outputs back to token order:
 * `out[n] = Σ_j weights[n, j] · expertOutputs[p(n, j)]`, where row p of `expertOutputs` belongs to
 * slot `order[p]` (the dispatch order of {@link moeDispatch}). Differentiable w.r.t.
 * `expertOutputs` and `weights`.
 *
 * @param expertOutputs [N·k, H] rows in dispatch order
 * @param order [N·k] int32 slot of each row
 * @param weights routing weights [N, k]
 *
 * @example
 * ```ts
 * const ys = tf.tensor2d([[1, 1], [2, 2]]);            // rows for slots 1 and 0
 * const out = moeCombine(ys, tf.tensor1d([1, 0], 'int32'), tf.tensor2d([[0.25, 0.75]]));
 * out.print(); // [[1.25, 1.25]]  = 0.25·[2,2] + 0.75·[1,1]
 * ```
 */
export function moeCombine(expertOutputs: tf.Tensor, order: tf.Tensor, weights: tf.Tensor): tf.Tensor {
  const op = 'moeCombine';
  checkRank(op, 'expertOutputs', expertOutputs, 2, '[N·k, H]');
  checkRank(op, 'order', order, 1, '[N·k]');
  checkRank(op, 'weights', weights, 2, '[N, k]');
  checkDtype(op, 'order', order, 'int32');
  checkDtype(op, 'weights', weights, 'float32');
  checkDtype(op, 'expertOutputs', expertOutputs, 'float32');
  const m = weights.shape[0] * (weights.shape[1] as number);
  checkDim(op, 'expertOutputs', expertOutputs, 0, m, 'weights', weights, '[N·k, H]');
  checkDim(op, 'order', order, 0, m, 'weights', weights, '[N·k]');
  return moeCombineKernel.run({ expertOutputs, order, weights }, {})[0];
}
