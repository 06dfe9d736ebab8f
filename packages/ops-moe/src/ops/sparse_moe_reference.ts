import * as tf from '@tensorflow/tfjs-core';
import { topKRouterReference } from './top_k_router_reference';

/**
 * The whole MoE block, **dense**: every expert on every token, masked by the routing weights
 * (zero for unselected experts). Stock tfjs ops only; the oracle for the sparse path and a fallback
 * of last resort — it costs E/k times the sparse work.
 *
 * @param x [N, H]
 * @param routerWeight [E, H]
 * @param inputLinear [E, 2I, H]
 * @param outputLinear [E, H, I]
 * @param k experts per token
 * @returns `{ output [N, H], routerLogits [N, E] }`
 */
export function sparseMoeReference(
  x: tf.Tensor,
  routerWeight: tf.Tensor,
  inputLinear: tf.Tensor,
  outputLinear: tf.Tensor,
  k: number,
): { output: tf.Tensor; routerLogits: tf.Tensor } {
  return tf.tidy(() => {
    const [n, h] = x.shape;
    const [e, twoI] = inputLinear.shape;
    const i = twoI / 2;
    const routerLogits = tf.matMul(x, routerWeight, false, true); // [N, E]
    const [weights, indices] = topKRouterReference(routerLogits, k);
    const mask = tf.cast(tf.oneHot(indices, e), 'float32'); // [N, k, E]
    const gate = tf.sum(tf.mul(mask, tf.expandDims(weights, 2)), 1); // [N, E]
    const a = tf.reshape(tf.matMul(x, tf.reshape(inputLinear, [e * twoI, h]), false, true), [n, e, twoI]);
    const [g, u] = tf.split(a, [i, i], 2);
    const act = tf.transpose(tf.mul(tf.mul(g, tf.sigmoid(g)), u), [1, 0, 2]); // [E, N, I]
    const y = tf.matMul(act, outputLinear, false, true); // [E, N, H]
    const output = tf.sum(tf.mul(y, tf.expandDims(tf.transpose(gate), 2)), 0); // [N, H]
    return { output, routerLogits };
  });
}
