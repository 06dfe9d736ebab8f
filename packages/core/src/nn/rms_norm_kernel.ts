import * as tf from '@tensorflow/tfjs-core';
import { defineKernel } from '../kernels/define_kernel';

/** Inputs of the `RmsNorm` kernel: x [..., dim] and the scale [dim]. */
export type RmsNormInputs = { x: tf.Tensor; weight: tf.Tensor };
/** Attributes of the `RmsNorm` kernel. */
export type RmsNormAttrs = { eps: number };

/** The composed definition: tfjs ops, float32 at every step (as Hugging Face computes it). */
export function rmsNormReference(x: tf.Tensor, weight: tf.Tensor, eps: number): tf.Tensor {
  return tf.tidy(() => {
    const meanSquare = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(meanSquare, eps))), weight);
  });
}

/**
 * `y = w ⊙ x / sqrt(mean(x²) + eps)` over the last axis as one kernel. Composed, it is six tfjs
 * operations (square, mean, add, rsqrt, two multiplies): at a decode step of a 2048-wide model
 * each costs more in dispatch than in arithmetic, 81 norms per H-Micro token. The fused body sums
 * the squares in float64, so it is within an ulp or two of the float32 composition, not equal.
 */
export const RmsNorm = defineKernel<RmsNormInputs, RmsNormAttrs>({
  name: 'GraniteflowRmsNorm',
  inputNames: ['x', 'weight'],
  reference: ({ x, weight }, { eps }) => [rmsNormReference(x, weight, eps)],
  fused: {
    outputs: ({ x }) => [{ shape: x.shape, dtype: 'float32' }],
    compute: ({ x, weight }, [y], _shapes, { eps }) => {
      const dim = weight.length;
      for (let row = 0; row < x.length; row += dim) {
        let sum = 0;
        for (let i = 0; i < dim; i++) sum += x[row + i] * x[row + i];
        const scale = 1 / Math.sqrt(sum / dim + eps);
        for (let i = 0; i < dim; i++) y[row + i] = x[row + i] * scale * weight[i];
      }
    },
  },
  gradient: 'reference',
});
