import * as tf from '@tensorflow/tfjs-core';

/**
 * {@link moeCombine} from stock tfjs ops: scale each sorted row by its slot's weight, then
 * `unsortedSegmentSum` by token. Differentiable w.r.t. `expertOutputs` and `weights`.
 */
export function moeCombineReference(
  expertOutputs: tf.Tensor,
  order: tf.Tensor,
  weights: tf.Tensor,
): tf.Tensor {
  return tf.tidy(() => {
    const [n, k] = weights.shape as [number, number];
    const w = tf.gather(tf.reshape(weights, [-1]), order as tf.Tensor1D); // [M]
    const scaled = tf.mul(expertOutputs, tf.expandDims(w, 1)); // [M, H]
    const tokens = tf.floorDiv(order, tf.scalar(k, 'int32')) as tf.Tensor1D;
    return tf.unsortedSegmentSum(scaled, tokens, n); // [N, H]
  });
}
