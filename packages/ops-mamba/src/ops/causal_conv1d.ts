import type * as tf from '@tensorflow/tfjs-core';
import { causalConv1dKernel } from '../kernels/CausalConv1d';
import type { ConvActivation } from '../kernel_names';
import { checkRank, checkShape } from './validate';

/** Options of {@link causalConv1d}. */
export interface CausalConv1dOptions {
  /** [C] */
  bias?: tf.Tensor;
  /** \[B, K−1, C]: the last K−1 raw inputs before `x` (default zeros: a fresh sequence) */
  convState?: tf.Tensor;
  /** Applied after the conv (default `'silu'`). */
  activation?: ConvActivation;
}

/**
 * Causal depthwise 1-D convolution over time, channels-last, with a cache
 * (model guide: The Mamba-2 mixer, step 2):
 * `y_t[c] = act(bias[c] + Σ_k weight[c, k]·u_{t−K+1+k}[c])` where u is `[convState, x]`, so tap K−1
 * multiplies the current token. The cache holds the last K−1 raw (pre-activation) inputs, the mlx /
 * llama.cpp convention (P22): continuing from the returned `convState` with more tokens gives
 * exactly what one call over the whole sequence gives, for any T (including T = 1 and T < K−1).
 *
 * The checkpoint's `conv1d.weight` [C, 1, K] is `weight` after a reshape to [C, K].
 *
 * @returns `y` [B, T, C] and the new `convState` [B, K−1, C]
 *
 * @example
 * ```ts
 * const x = tf.tensor3d([[[1], [2], [3]]]); // [1, 3, 1]
 * const { y, convState } = causalConv1d(x, tf.tensor2d([[1, 10]]), { activation: 'none' });
 * // y = [[[10], [21], [32]]], convState = [[[3]]]
 * ```
 */
export function causalConv1d(x: tf.Tensor, weight: tf.Tensor, options: CausalConv1dOptions = {}): { y: tf.Tensor; convState: tf.Tensor } {
  const op = 'causalConv1d';
  const { bias, convState, activation = 'silu' } = options;
  checkRank(op, 'x', x, ['B', 'T', 'C']);
  const [batch, , C] = x.shape;
  checkShape(op, 'weight', weight, ['C', 'K'], [C, -1]);
  const K = (weight.shape as number[])[1];
  if (K < 1) throw new RangeError(`${op}: weight must have at least one tap, got [${weight.shape.join(', ')}]`);
  if (bias) checkShape(op, 'bias', bias, ['C'], [C]);
  if (convState) checkShape(op, 'convState', convState, ['B', 'K-1', 'C'], [batch, K - 1, C]);
  if (activation !== 'silu' && activation !== 'none') {
    throw new RangeError(`${op}: activation must be 'silu' or 'none', got '${String(activation)}'`);
  }
  const [y, newState] = causalConv1dKernel.run({ x, weight, bias, convState }, { activation });
  return { y, convState: newState };
}
