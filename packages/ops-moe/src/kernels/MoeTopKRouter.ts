import * as tf from '@tensorflow/tfjs-core';
import { defineKernel, type Kernel } from '@graniteflow/core';
import { MoeTopKRouter, type MoeTopKRouterAttrs, type MoeTopKRouterInputs } from '../kernel_names';
import { topKRouterReference } from '../ops/top_k_router_reference';
import { topKRouterImpl } from './MoeTopKRouter_impl';

/**
 * Top-k router. Outputs `[weights [N,k] float32, indices [N,k] int32]`.
 *
 * Gradient (w.r.t. `logits`, through `weights`): with `w` the k-way softmax,
 * `∂L/∂r[idx_j] = w_j · (dy_j − Σ_i dy_i w_i)`, scattered to the selected experts; the others get
 * zero. The indices are recomputed with this same kernel, so ties resolve as in the forward pass.
 */
export const moeTopKRouterKernel: Kernel<MoeTopKRouterInputs, MoeTopKRouterAttrs> = defineKernel<MoeTopKRouterInputs, MoeTopKRouterAttrs>({
  name: MoeTopKRouter,
  inputNames: ['logits'],
  reference: ({ logits }, { k }) => topKRouterReference(logits, k),
  fused: {
    outputs: ({ logits }, { k }) => [
      { shape: [logits.shape[0], k], dtype: 'float32' },
      { shape: [logits.shape[0], k], dtype: 'int32' },
    ],
    compute: ({ logits }, [weights, indices], shapes, { k }) => {
      const [n, e] = shapes.logits;
      topKRouterImpl(logits as Float32Array, n, e, k, weights as Float32Array, indices as Int32Array);
    },
  },
  gradient: ([dWeights], { logits }, _outputs, { k }) => {
    if (dWeights == null) return { logits: tf.zerosLike(logits) };
    const e = logits.shape[1] as number;
    const [w, idx] = moeTopKRouterKernel.run({ logits }, { k });
    const dot = tf.sum(tf.mul(dWeights, w), -1, true); // [N, 1]
    const dSelected = tf.mul(w, tf.sub(dWeights, dot)); // [N, k]
    const mask = tf.cast(tf.oneHot(idx, e), 'float32'); // [N, k, E]
    return { logits: tf.sum(tf.mul(mask, tf.expandDims(dSelected, 2)), 1) };
  },
});
