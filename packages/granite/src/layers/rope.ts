import * as tf from '@tensorflow/tfjs-core';

/**
 * Rotary embedding angles for positions [B, T] (HF "rotate half" convention; model guide: Attention):
 * returns cos and sin of shape [B, T, 1, hd], the angle vector repeated twice.
 */
export function ropeAngles(positions: tf.Tensor2D, headDim: number, theta: number): [tf.Tensor, tf.Tensor] {
  return tf.tidy(() => {
    const half = headDim / 2;
    const invFreq = tf.tensor1d(Array.from({ length: half }, (_, i) => theta ** ((-2 * i) / headDim)));
    const angles = tf.mul(tf.expandDims(tf.cast(positions, 'float32'), 2), invFreq); // [B, T, hd/2]
    const full = tf.expandDims(tf.concat([angles, angles], 2), 2); // [B, T, 1, hd]
    return [tf.cos(full), tf.sin(full)];
  });
}

/** x [B, T, heads, hd] rotated: x·cos + rotate_half(x)·sin with rotate_half(v) = [−v₂, v₁]. */
export function applyRope(x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const half = x.shape[3]! / 2;
    const [first, second] = tf.split(x, [half, half], 3);
    const rotated = tf.concat([tf.neg(second), first], 3);
    return tf.add(tf.mul(x, cos), tf.mul(rotated, sin));
  });
}
