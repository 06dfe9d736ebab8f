import type * as tf from '@tensorflow/tfjs-core';
import { gatedRmsNormKernel } from '../kernels/GatedRmsNorm';
import { checkFloat, checkShape, ShapeError } from './validate';

/** Options of {@link gatedRmsNorm}. */
export interface GatedRmsNormOptions {
  /** Added to the mean square (default 1e-6, HF's `rms_norm_eps` default; releases use 1e-5). */
  eps?: number;
  /**
   * Channels normalised together (default D, HF's full-width norm). mamba_ssm / llama.cpp
   * normalise D/G channels per group; the two agree when G = 1 (P12).
   */
  groupSize?: number;
}

/**
 * Gated RMSNorm of the Mamba-2 mixer, gate before norm (P7):
 * `g = y·silu(z)`, `out = weight·g / sqrt(mean(g²) + eps)`, the mean taken over each group of
 * `groupSize` channels of the last axis.
 *
 * @param y [..., D]
 * @param z [..., D] the gate
 * @param weight [D]
 *
 * @example
 * ```ts
 * const out = gatedRmsNorm(tf.tensor2d([[3, 4]]), tf.tensor2d([[30, 30]]), tf.ones([2]), { eps: 0 });
 * // silu(30) ≈ 30, g ≈ [90, 120], rms = 106.07 → out ≈ [[0.8485, 1.1314]]
 * ```
 */
export function gatedRmsNorm(y: tf.Tensor, z: tf.Tensor, weight: tf.Tensor, options: GatedRmsNormOptions = {}): tf.Tensor {
  const op = 'gatedRmsNorm';
  checkFloat(op, 'y', y);
  if (y.rank < 1) throw new ShapeError(`${op}: y must be [..., D], got a scalar`);
  const D = y.shape[y.rank - 1];
  const dims = y.shape.map((d) => d);
  checkShape(op, 'z', z, [...y.shape.slice(0, -1).map((_, i) => `d${i}`), 'D'], dims);
  checkShape(op, 'weight', weight, ['D'], [D]);
  const eps = options.eps ?? 1e-6;
  const groupSize = options.groupSize ?? D;
  if (!(Number.isInteger(groupSize) && groupSize > 0 && D % groupSize === 0)) {
    throw new ShapeError(`${op}: groupSize must divide D = ${D} (y [${y.shape.join(', ')}]), got ${groupSize}`);
  }
  return gatedRmsNormKernel.run({ y, z, weight }, { eps, groupSize })[0];
}
