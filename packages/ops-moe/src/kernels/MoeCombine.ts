import * as tf from '@tensorflow/tfjs-core';
import { defineKernel } from '@graniteflow/core';
import { MoeCombine, type MoeCombineAttrs, type MoeCombineInputs } from '../kernel_names';
import { moeCombineReference } from '../ops/moe_combine_reference';
import { moeCombineImpl } from './MoeCombine_impl';
import { moeGatherRowsKernel, moeScatterRowsKernel } from './MoeRows';

/**
 * Combine: `out [N, H]`. Gradient by hand from row gathers/scatters (no UnsortedSegmentSum, so it
 * runs on wasm): with `t(p) = order[p] / k` and `w(p) = weights[order[p]]`,
 * `∂ys[p] = w(p)·dy[t(p)]` and `∂weights[order[p]] = ⟨dy[t(p)], ys[p]⟩`.
 */
export const moeCombineKernel = defineKernel<MoeCombineInputs, MoeCombineAttrs>({
  name: MoeCombine,
  inputNames: ['expertOutputs', 'order', 'weights'],
  reference: ({ expertOutputs, order, weights }) => [moeCombineReference(expertOutputs, order, weights)],
  fused: {
    outputs: ({ expertOutputs, weights }) => [{ shape: [weights.shape[0], expertOutputs.shape[1]], dtype: 'float32' }],
    compute: ({ expertOutputs, order, weights }, [out], shapes) => {
      const k = shapes.weights[1];
      const h = shapes.expertOutputs[1];
      moeCombineImpl(expertOutputs as Float32Array, order as Int32Array, weights as Float32Array, k, h, out as Float32Array);
    },
  },
  gradient: ([dy], { expertOutputs, order, weights }) => {
    const [n, k] = weights.shape as [number, number];
    const m = n * k;
    const tokens = tf.floorDiv(order, tf.scalar(k, 'int32'));
    const dyRows = moeGatherRowsKernel.run({ x: dy, rows: tokens }, {})[0]; // [M, H]
    const wSorted = moeGatherRowsKernel.run({ x: tf.reshape(weights, [m, 1]), rows: order }, {})[0]; // [M, 1]
    const dDot = tf.sum(tf.mul(dyRows, expertOutputs), -1, true); // [M, 1]
    const dWeights = moeScatterRowsKernel.run({ src: dDot, rows: order }, { numRows: m })[0];
    return { expertOutputs: tf.mul(dyRows, wSorted), weights: tf.reshape(dWeights, [n, k]) };
  },
  nonDifferentiable: ['order'],
});
