import * as tf from '@tensorflow/tfjs-core';
import { swigluReference } from './swiglu_reference';

/**
 * The naive routed-expert reference: for every token slot, gather that slot's expert weights and
 * apply them (memory grows with N·k·expert size — a forward oracle for small shapes; its autodiff
 * needs UnsortedSegmentSum, which tfjs-wasm lacks).
 * `x` [N, H], `inputLinear` [E, 2I, H], `outputLinear` [E, H, I], `indices`/`weights` [N, k].
 */
export function moeExpertsReference(
  x: tf.Tensor,
  inputLinear: tf.Tensor,
  outputLinear: tf.Tensor,
  indices: tf.Tensor,
  weights: tf.Tensor,
): tf.Tensor {
  return tf.tidy(() => {
    const [n, h] = x.shape;
    const k = indices.shape[1] as number;
    const flat = tf.reshape(indices, [-1]); // [N·k]
    const w1 = tf.gather(inputLinear, flat); // [N·k, 2I, H]
    const w2 = tf.gather(outputLinear, flat); // [N·k, H, I]
    const xs = tf.reshape(tf.tile(tf.expandDims(x, 1), [1, k, 1]), [n * k, 1, h]); // [N·k, 1, H]
    const a = tf.matMul(xs, w1, false, true); // [N·k, 1, 2I]
    const y = tf.matMul(swigluReference(a), w2, false, true); // [N·k, 1, H]
    const weighted = tf.mul(tf.reshape(y, [n, k, h]), tf.expandDims(weights, 2));
    return tf.sum(weighted, 1); // [N, H]
  });
}
