import * as tf from '@tensorflow/tfjs-core';
import type { GatedRmsNormAttrs, GatedRmsNormInputs } from '../kernel_names';

/**
 * Gated RMSNorm composed from stock tfjs ops: g = y·silu(z) first, then RMS-normalise each group of
 * `groupSize` channels, then scale by `weight` (P7).
 */
export function gatedRmsNormReference(inputs: GatedRmsNormInputs, attrs: GatedRmsNormAttrs): tf.Tensor[] {
  const { y, z, weight } = inputs;
  const D = y.shape[y.shape.length - 1];
  const gs = attrs.groupSize;
  return tf.tidy(() => {
    const g = tf.mul(y, tf.mul(z, tf.sigmoid(z))); // [..., D]
    const grouped = tf.reshape(g, [-1, D / gs, gs]); // [rows, D/gs, gs]
    const inv = tf.rsqrt(tf.add(tf.mean(tf.square(grouped), -1, true), attrs.eps));
    const normed = tf.reshape(tf.mul(grouped, inv), y.shape);
    return [tf.mul(normed, weight)];
  });
}
